"""XLA:CPU settings rd applies when it is imported, before JAX starts its CPU backend.

In jaxlib 0.10, XLA:CPU hands dots to YNNPACK and by default also lets YNNPACK take over the
reductions a dot feeds, fusing them into one library call. On the vocabulary head that is much
slower: a log-softmax of [128 rows x 262,144] Gemma logits took 0.93-1.07 s with the default and
0.47-0.50 s with dots only, and the forward KL of two such heads 1.8-2.1 s against 0.8-0.9 s
(2 CPU cores; `docs/performance.md`). Fusing elementwise work into the dots did not help either
(Gemma's MLP as one YNNPACK graph: 68 ms a layer against 45 ms as three dots). So rd asks for
YNNPACK on individual dots only.

XLA reads `XLA_FLAGS` once, at its first computation, so this must run before any JAX work:
`rd/__init__.py` calls it. A value the user already set for the same flag is kept. The flag is
known to this jaxlib range (setup.py pins jax < 0.11); other backends ignore it.
"""

from __future__ import annotations

import os

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_DEFAULT = "individual_dot"


def with_defaults(xla_flags: str) -> str:
  """`xla_flags` plus rd's YNNPACK setting, unless the flag is already there."""
  if YNN_FLAG in xla_flags:
    return xla_flags
  return f"{xla_flags} {YNN_FLAG}={YNN_DEFAULT}".strip()


def apply_defaults() -> None:
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))
