"""rd's XLA:CPU flag defaults: added once, never over a user's own value, and in effect."""

import os

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
