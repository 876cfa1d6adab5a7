"""The GGUF container: metadata, tensor directory, and dequantized tensor data.

Why not `gguf.GGUFReader`? It builds a few numpy views for every element of every metadata
array, so opening a Gemma 3 file (262k-token vocabulary) takes ~20 s on a small CPU. This
reader parses the header with `struct` in well under a second and memory-maps tensor bytes
only when a tensor is asked for; dequantization is still the `gguf` package's own.

Names here are llama.cpp's (`blk.0.attn_q.weight`); `rd.weights.gguf` maps them to Hugging Face.
Format reference: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quant_shape_to_byte_shape

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)  # version 1 used 32-bit counts and predates every model we load
_DEFAULT_ALIGNMENT = 32

# GGUF metadata value types -> struct format, for scalars.
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """Where one tensor lives. `shape` is numpy order (ggml dims reversed): [out, in] for linears."""

  name: str
  shape: tuple[int, ...]
  ggml_type: GGMLQuantizationType
  offset: int  # absolute byte offset in the file
  nbytes: int


class _Cursor:
  """Sequential little-endian reads that fail loudly on a short read (a truncated file)."""

  def __init__(self, f: BinaryIO):
    self._f = f

  def take(self, n: int) -> bytes:
    data = self._f.read(n)
    if len(data) != n:
      raise EOFError(f"wanted {n} bytes at offset {self._f.tell() - len(data)}, file ended")
    return data

  def scalar(self, fmt: str) -> Any:
    return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

  def string(self) -> str:
    return self.take(self.scalar("<Q")).decode("utf-8")

  def value(self, vtype: int) -> Any:
    if vtype in _SCALAR_FORMATS:
      return self.scalar(_SCALAR_FORMATS[vtype])
    if vtype == _STRING:
      return self.string()
    if vtype == _ARRAY:
      item_type, count = self.scalar("<I"), self.scalar("<Q")
      if item_type in _SCALAR_FORMATS:  # numeric arrays: one read, no per-item loop
        dtype = np.dtype(_SCALAR_FORMATS[item_type])
        return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype)
      return [self.value(item_type) for _ in range(count)]
    raise ValueError(f"unknown metadata value type {vtype}")

  def tell(self) -> int:
    return self._f.tell()


class GGUFFile:
  """An opened GGUF file: `metadata` (key -> value) and `tensors` (name -> `TensorInfo`).

  Numeric metadata arrays are numpy arrays, string arrays are lists of `str`.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise FileNotFoundError(f"GGUF file not found: {self.path}")
    with open(self.path, "rb") as f:
      if f.read(4) != _MAGIC:
        raise ValueError(f"{self.path} is not a GGUF file (it does not start with b'GGUF')")
      try:
        self.metadata, self.tensors = self._parse(_Cursor(f))
      except (EOFError, UnicodeDecodeError, ValueError, struct.error) as e:
        raise ValueError(f"{self.path} is truncated or corrupt, not a readable GGUF: {e}") from e
    self._check_bounds()
    self._data: np.memmap | None = None

  def _parse(self, cur: _Cursor) -> tuple[dict[str, Any], dict[str, TensorInfo]]:
    version = cur.scalar("<I")
    if version not in _VERSIONS:
      raise ValueError(f"GGUF version {version} (supported: {_VERSIONS}; "
                       "a huge number means a big-endian file, which is not supported)")
    n_tensors, n_kv = cur.scalar("<Q"), cur.scalar("<Q")
    metadata = {}
    for _ in range(n_kv):
      key = cur.string()
      metadata[key] = cur.value(cur.scalar("<I"))
    raw = []
    for _ in range(n_tensors):
      name = cur.string()
      dims = [cur.scalar("<Q") for _ in range(cur.scalar("<I"))]
      raw.append((name, tuple(reversed(dims)), GGMLQuantizationType(cur.scalar("<I")),
                  cur.scalar("<Q")))
    alignment = int(metadata.get("general.alignment", _DEFAULT_ALIGNMENT))
    data_start = -(-cur.tell() // alignment) * alignment  # tensor data starts aligned
    tensors = {}
    for name, shape, ggml_type, rel_offset in raw:
      block, type_size = GGML_QUANT_SIZES[ggml_type]
      nbytes = int(np.prod(shape, dtype=np.int64)) // block * type_size
      tensors[name] = TensorInfo(name, shape, ggml_type, data_start + rel_offset, nbytes)
    return metadata, tensors

  def _check_bounds(self) -> None:
    size = os.path.getsize(self.path)
    for t in self.tensors.values():
      if t.offset + t.nbytes > size:
        raise ValueError(f"{self.path} is truncated: tensor {t.name!r} ends at byte "
                         f"{t.offset + t.nbytes} but the file has {size} bytes")

  def raw(self, name: str) -> np.ndarray:
    """The tensor's stored bytes (a read-only memory map), shaped as `gguf.quants` expects."""
    t = self.tensors[name]
    if self._data is None:
      self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
    return self._data[t.offset:t.offset + t.nbytes].reshape(
        quant_shape_to_byte_shape(t.shape, t.ggml_type))

  def tensor(self, name: str) -> np.ndarray:
    """The tensor dequantized to a fresh float32 array in numpy order."""
    t = self.tensors[name]
    raw = self.raw(name)
    out = dequantize(raw, t.ggml_type)
    if np.may_share_memory(out, raw):  # F32 comes back as a view: copy it out of the file map
      out = out.copy()
    return out.astype(np.float32, copy=False).reshape(t.shape)
