"""Shared pytest configuration."""

import pytest


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: minutes, not seconds (the real Gemma 3 270M, multi-device variants); run with -m slow")


def pytest_collection_modifyitems(config, items):
  """Slow tests run only when asked for (`-m slow`), so a plain `pytest` stays fast."""
  if "slow" in (config.getoption("markexpr") or ""):
    return
  skip = pytest.mark.skip(reason="slow: run with -m slow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
