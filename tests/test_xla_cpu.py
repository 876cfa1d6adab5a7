"""rd's XLA:CPU flag defaults: added once, never over a user's own value, and in effect."""

import os
import platform
import subprocess
import sys

import pytest

from rd import xla_cpu


def test_adds_the_ynn_setting_to_other_flags():
  got = xla_cpu.with_defaults("--xla_force_host_platform_device_count=8")
  assert got.split() == ["--xla_force_host_platform_device_count=8",
                         f"{xla_cpu.YNN_FLAG}={xla_cpu.YNN_DEFAULT}"]
  assert xla_cpu.with_defaults("") == f"{xla_cpu.YNN_FLAG}={xla_cpu.YNN_DEFAULT}"


def test_keeps_the_users_value_and_is_idempotent():
  mine = f"{xla_cpu.YNN_FLAG}=dot,reduce"
  assert xla_cpu.with_defaults(mine) == mine
  once = xla_cpu.with_defaults("")
  assert xla_cpu.with_defaults(once) == once


def test_importing_rd_set_it_for_this_process():
  import rd  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  assert xla_cpu.YNN_FLAG in os.environ["XLA_FLAGS"]


def test_cpu_only_reads_jax_platforms():
  assert xla_cpu.cpu_only({"JAX_PLATFORMS": "cpu"})
  assert not xla_cpu.cpu_only({"JAX_PLATFORMS": "cuda,cpu"})
  assert not xla_cpu.cpu_only({"JAX_PLATFORMS": "tpu"})


_PROBE = """
import resource, time
import rd, jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sum(jnp.exp(jnp.outer(x, x)) * 2.0))  # a 64 MB [4096, 4096] temporary
x = jnp.linspace(0.0, 1e-3, 4096)
faults = []
for _ in range(8):
  time.sleep(0.05)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[2:]))
"""


def _fewest_page_faults(**env) -> int:
  out = subprocess.run([sys.executable, "-c", _PROBE], env={**os.environ, "JAX_PLATFORMS": "cpu",
                                                           **env},
                       check=True, capture_output=True, text=True).stdout
  return int(out.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_importing_rd_makes_later_calls_reuse_freed_memory():
  """A jitted call whose temporaries exceed glibc's mmap threshold faults in fresh pages on
  every call under glibc's defaults, and none once rd's settings keep freed memory. (The
  previous call's block may still be in use for a moment after it returns, so the calls are
  spaced and the best of several counts.)"""
  assert _fewest_page_faults() < 1000
  assert _fewest_page_faults(RD_SYSTEM_MALLOC="1") > 10_000


_TRIM_PROBE = """
import numpy as np
import rd, jax

def rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * 4096 // 2**20

garbage = np.ones(256 * 2**20 // 8)  # 256 MB, freed but kept in the heap under rd's settings
del garbage
kept = rss_mb()
jax.jit(lambda x: x * 3.0 + 1.0)(np.float32(2.0)).block_until_ready()  # one XLA compilation
print(kept, rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_compilation_returns_freed_memory_to_the_os():
  """Memory freed before a compilation (a loader's temporaries, the compiler's own) does not
  stay resident: rd trims the heap after every XLA compilation."""
  out = subprocess.run([sys.executable, "-c", _TRIM_PROBE],
                       env={**os.environ, "JAX_PLATFORMS": "cpu"},
                       check=True, capture_output=True, text=True).stdout
  kept, after = (int(v) for v in out.split()[-2:])
  assert kept - after > 200, (kept, after)


_HOLE_PROBE = """
import numpy as np
import rd
from rd import xla_cpu

def rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * 4096 // 2**20

xla_cpu.release_heap_holes()
block = np.ones(256 * 2**20 // 8)  # 256 MB in the heap (rd's settings never mmap)
pinned = np.ones(2**20 // 8)  # a live neighbour above it: freeing the block leaves a hole
del block
kept = rss_mb()
first, second = xla_cpu.release_heap_holes(), xla_cpu.release_heap_holes()
import jax
y = jax.jit(lambda x: x * 3.0 + 1.0)(np.float32(2.0))  # a new program: its first call
after_compile, then = xla_cpu.release_heap_holes(y), xla_cpu.release_heap_holes(y)
print(kept, rss_mb(), first, second, after_compile, then)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_hole_below_the_heaps_top_is_returned_once():
  """A large block freed between live chunks stays resident under rd's settings until
  release_heap_holes, which returns it once and then has nothing new to return; it releases
  once after a new program's first call too."""
  out = subprocess.run([sys.executable, "-c", _HOLE_PROBE],
                       env={**os.environ, "JAX_PLATFORMS": "cpu"},
                       check=True, capture_output=True, text=True).stdout
  kept, after, *released = out.split()[-6:]
  assert int(kept) - int(after) > 200, (kept, after)
  assert released == ["True", "False", "True", "False"]
