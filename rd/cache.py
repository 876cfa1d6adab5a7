"""Where rd keeps files it derives once and reuses: the assembled default GGUF, converted
tokenizers. `$RD_CACHE_DIR` overrides the default `~/.cache/rd` (tests point it at a tmp dir)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
  """`$RD_CACHE_DIR/<parts>` (default `~/.cache/rd/<parts>`), created if missing."""
  root = os.environ.get("RD_CACHE_DIR") or Path.home() / ".cache" / "rd"
  path = Path(root, *parts).expanduser()
  path.mkdir(parents=True, exist_ok=True)
  return path
