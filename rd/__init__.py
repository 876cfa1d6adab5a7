"""rd: internalizing context into a language model's weights, in JAX."""

from rd import xla_cpu as _xla_cpu

_xla_cpu.apply_defaults()  # before any JAX computation: XLA reads its flags once
