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

**What is freed for good goes back.** Kept memory is only useful where it is reused. Two kinds
are not, and rd returns their pages to the OS (`malloc_trim`):
* after every XLA compilation, what the compiler and, before it, a loader freed (dequantizing
  the GGUF default leaves ~1.2 GB of free heap behind);
* holes below the heap's top that a step's block can no longer use. XLA:CPU asks for the block
  with `posix_memalign(64, n)`, which glibc serves by carving n + 96 bytes and giving back the
  spare; freed between live neighbours, the block leaves an n-byte hole that the next step's
  identical request does not fit, so the heap grows by a second resident block. This happens
  on a new program's first call, placed among the compiler's leftovers: W1's peak was 2.34 GiB
  in one run of a script and 3.01-3.02 in two others; 2.34-2.36 in six runs with the release.
  The training loops call `release_heap_holes()` after each step (page faults of ~0.2 s once).
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
# Growth of free memory below the heap's top that `release_heap_holes` returns to the OS.
HOLE_BYTES = 64 * 2**20
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


class _MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in (
      "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
      "fordblks", "keepcost")]


_applied = False  # whether rd's malloc settings are in effect in this process
_free_below_top_at_release = 0
_compiled_since_release = False  # a new program's first call may leave a hole (see below)


def free_below_top() -> int:
  """Bytes in the heap's free chunks other than its top (mallinfo2: fordblks - keepcost)."""
  libc = ctypes.CDLL(None)
  libc.mallinfo2.restype = _MallInfo2
  info = libc.mallinfo2()
  return info.fordblks - info.keepcost


def release_freed_memory(keep_top: bool = False) -> bool:
  """Returns the free pages inside the heap to the OS (malloc_trim), the heap's top too unless
  `keep_top`; False without glibc."""
  global _free_below_top_at_release, _compiled_since_release
  libc = ctypes.CDLL(None)
  if not hasattr(libc, "malloc_trim"):
    return False
  released = libc.malloc_trim(ctypes.c_size_t(2**62 if keep_top else 0)) == 1
  _compiled_since_release = False
  if hasattr(libc, "mallinfo2"):
    _free_below_top_at_release = free_below_top()
  return released


def release_heap_holes(wait_for=None, min_growth: int = HOLE_BYTES) -> bool:
  """Returns the pages of free chunks below the heap's top to the OS, keeping the top; True if
  it did. It does so after the first step of a newly compiled program (waiting for `wait_for`,
  the step's outputs, so that the step's block is free), where a block placed among compiler
  leftovers becomes a hole, and whenever free memory below the top has grown by `min_growth`
  since the last release. Otherwise it costs one mallinfo2 call, so training loops call it
  after every step. A no-op unless rd's malloc settings are in effect (glibc >= 2.33)."""
  global _free_below_top_at_release
  if not _applied:
    return False
  if _compiled_since_release:
    if wait_for is not None:
      import jax  # pylint: disable=import-outside-toplevel
      jax.block_until_ready(wait_for)
  else:
    free = free_below_top()
    # Measured from the lowest point since the last release: a hole that is reused lowers it.
    _free_below_top_at_release = min(_free_below_top_at_release, free)
    if free - _free_below_top_at_release < min_growth:
      return False
  release_freed_memory(keep_top=True)  # the top is where the next step's block will go
  return True


def _after_compile(event: str, duration: float, **kwargs) -> None:
  global _compiled_since_release
  del duration, kwargs
  if event == BACKEND_COMPILE_EVENT:
    release_freed_memory()
    _compiled_since_release = True


def apply_defaults() -> None:
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))
  global _applied
  if os.environ.get("RD_SYSTEM_MALLOC", "") in ("", "0") and cpu_only() and keep_freed_memory():
    _applied = hasattr(ctypes.CDLL(None), "mallinfo2")  # glibc >= 2.33
    from jax import monitoring  # pylint: disable=import-outside-toplevel
    monitoring.register_event_duration_secs_listener(_after_compile)
