"""XLA:CPU settings rd applies when it is imported, before JAX starts its CPU backend.

**Dots only in YNNPACK.** In jaxlib 0.10, XLA:CPU hands dots to YNNPACK and by default also lets
YNNPACK take over the reductions a dot feeds, fusing them into one library call. On the
vocabulary head that is much slower: a log-softmax of [128 rows x 262,144] Gemma logits took
0.93-1.07 s with the default and 0.47-0.50 s with dots only, and the forward KL of two such heads
1.8-2.1 s against 0.8-0.9 s (2 CPU cores; `docs/performance.md`). Fusing elementwise work into
the dots did not help either (Gemma's MLP as one YNNPACK graph: 68 ms a layer against 45 ms as
three dots). So rd asks for YNNPACK on individual dots only. XLA reads `XLA_FLAGS` once, at its
first computation, so this must run before any JAX work: `rd/__init__.py` calls it. A value the
user already set for the same flag is kept. The flag is known to this jaxlib range (setup.py pins
jax < 0.11); other backends ignore it.

**Freed memory stays in the process.** XLA:CPU mallocs every call's temporaries as one block
(~1.1 GB for a Gemma 270M distillation step) and frees it when the call ends. glibc serves
blocks over 32 MB with mmap and returns them with munmap, so every step faults in and zeroes
~1.8 GB of fresh pages again (~440k page faults, 0.7 s of system time a step; worse with other
threads in the process). With one malloc arena, no mmap and no trimming, the next step reuses
the same memory: the W1 step went from 2.95 to 2.72 s (`docs/performance.md`). The peak
resident memory is unchanged; it is simply not given back to the OS between steps. Applied
only where JAX can run nowhere but the CPU (no accelerator plugin installed, or
`JAX_PLATFORMS=cpu`), on glibc; `RD_SYSTEM_MALLOC=1` keeps glibc's own settings.
"""

from __future__ import annotations

import ctypes
import os
from importlib import metadata, util

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_DEFAULT = "individual_dot"

# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
# (parameter, value): one arena (other threads' arenas cannot hold blocks over 64 MB and mmap
# them), never mmap, never trim the heap's top.
MALLOPT_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
# jax.monitoring's event after each XLA compilation (jax/_src/dispatch.py BACKEND_COMPILE_EVENT).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def with_defaults(xla_flags: str) -> str:
  """`xla_flags` plus rd's YNNPACK setting, unless the flag is already there."""
  if YNN_FLAG in xla_flags:
    return xla_flags
  return f"{xla_flags} {YNN_FLAG}={YNN_DEFAULT}".strip()


def cpu_only(environ=os.environ) -> bool:
  """Whether JAX will run on the CPU alone: `JAX_PLATFORMS` names only cpu, or it is unset and
  no accelerator plugin (CUDA/ROCm plugins, libtpu) is installed."""
  platforms = environ.get("JAX_PLATFORMS", "")
  if platforms:
    return {p.strip() for p in platforms.split(",")} == {"cpu"}
  return (not metadata.entry_points(group="jax_plugins") and util.find_spec("jax_plugins") is None
          and util.find_spec("libtpu") is None)


def keep_freed_memory() -> bool:
  """Applies MALLOPT_SETTINGS to glibc's malloc; False where there is no glibc."""
  libc = ctypes.CDLL(None)  # the C library Python runs on (no ldconfig lookup at import)
  if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in MALLOPT_SETTINGS)


def release_freed_memory() -> bool:
  """Returns the free pages inside the heap to the OS (malloc_trim(0)); False without glibc."""
  libc = ctypes.CDLL(None)
  return hasattr(libc, "malloc_trim") and libc.malloc_trim(0) == 1


def _after_compile(event: str, duration: float, **kwargs) -> None:
  del duration, kwargs
  if event == BACKEND_COMPILE_EVENT:
    release_freed_memory()


def apply_defaults() -> None:
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))
  if os.environ.get("RD_SYSTEM_MALLOC", "") in ("", "0") and cpu_only() and keep_freed_memory():
    from jax import monitoring  # pylint: disable=import-outside-toplevel
    monitoring.register_event_duration_secs_listener(_after_compile)
