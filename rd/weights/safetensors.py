"""Lazy reading of Hugging Face safetensors directories (single file or sharded index).

The format is an 8-byte header length, a JSON header of (dtype, shape, byte offsets) per tensor,
then raw little-endian data. We memory-map it ourselves instead of using `safetensors`' numpy
backend because that backend cannot return bfloat16, and a memmap lets each device's loader read
only the bytes of its own shard.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import ml_dtypes
import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
          "BOOL": np.bool_}


class _Entry(NamedTuple):
  file: str
  dtype: np.dtype
  shape: tuple[int, ...]
  start: int  # absolute byte offset in the file


def _read_header(path: str) -> dict[str, _Entry]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    raw = f.read(8)
    if len(raw) < 8:
      raise ValueError(f"{path} is truncated or not a safetensors file ({size} bytes)")
    (header_len,) = struct.unpack("<Q", raw)
    if 8 + header_len > size:
      raise ValueError(f"{path} is truncated or not a safetensors file: header of "
                       f"{header_len} bytes in a file of {size} bytes")
    try:
      header = json.loads(f.read(header_len))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{path} is not a safetensors file: unreadable header ({e})") from e
  entries, data_start = {}, 8 + header_len
  for name, info in header.items():
    if name == "__metadata__":
      continue
    begin, end = info["data_offsets"]
    if data_start + end > size:
      raise ValueError(f"{path} is truncated: tensor {name!r} ends at byte {data_start + end}, "
                       f"the file has {size} bytes; re-copy or re-download the file")
    if info["dtype"] not in DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    entries[name] = _Entry(path, np.dtype(DTYPES[info["dtype"]]), tuple(info["shape"]),
                           data_start + begin)
  return entries


class SafetensorsReader(Mapping):
  """HF name -> numpy view of a tensor in a model directory, read lazily from memory maps."""

  def __init__(self, model_dir: str):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index):
      with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(single):
      files = ["model.safetensors"]
    else:
      raise FileNotFoundError(f"{model_dir}: no model.safetensors or "
                              "model.safetensors.index.json found")
    self._entries: dict[str, _Entry] = {}
    for name in files:
      path = os.path.join(model_dir, name)
      if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is listed in the index but does not exist")
      self._entries.update(_read_header(path))

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._entries[name].shape

  def __getitem__(self, name: str) -> np.ndarray:
    e = self._entries[name]
    return np.memmap(e.file, dtype=e.dtype, mode="r", offset=e.start, shape=e.shape)
