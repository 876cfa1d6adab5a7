"""Shared pytest configuration."""


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: needs the real Gemma 3 270M model; run with -m slow")
