"""`load_model(path)`: a Hugging Face safetensors directory or a GGUF file -> `Decoder`.

Every parameter is built with `jax.make_array_from_callback`, so each device reads only the
slice its sharding asks for: a sharded model is never assembled whole on one host.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rd.embedded import resolve_model_path
from rd.models.decoder import Decoder
from rd.models.spec import ModelSpec, from_hf_config, load_hf_config
from rd.weights import gguf
from rd.weights.names import hf_tensor, rd_path
from rd.weights.safetensors import SafetensorsReader

# (rd parameter path, shape) -> where that parameter goes. Default: the first device.
ShardingFn = Callable[[tuple[str, ...], tuple[int, ...]], jax.sharding.Sharding]

_PREFIXES = ("model.", "model.language_model.", "language_model.model.")


def open_checkpoint(path: str):
  """(spec, reader, description) for a safetensors directory, a .gguf file or the default alias."""
  path = str(resolve_model_path(path))
  if path.endswith(".gguf"):
    tensors = gguf.read_gguf_tensors(path)
    return from_hf_config(tensors.config, source=path), tensors, path
  if not os.path.isdir(path):
    raise ValueError(f"model path {path} is neither a directory (config.json + safetensors) "
                     "nor a .gguf file")
  return load_hf_config(path), SafetensorsReader(path), path


def _prefix(reader, where: str) -> str:
  for prefix in _PREFIXES:
    if prefix + "embed_tokens.weight" in reader:
      return prefix
  raise ValueError(f"{where}: no embedding tensor (looked for "
                   f"{[p + 'embed_tokens.weight' for p in _PREFIXES]})")


def _expected(spec: ModelSpec, param, shape, prefix) -> list[tuple[str, tuple[int, ...], bool]]:
  """[(HF name, HF shape, transpose)] for every layer slice of one rd parameter."""
  target = hf_tensor(param, spec, prefix)
  per_layer = shape[1:] if param[0] == "blocks" else shape
  hf_shape = tuple(reversed(per_layer)) if target.transpose else tuple(per_layer)
  layers = range(spec.num_layers) if param[0] == "blocks" else [None]
  return [(target.name.format(i=i), hf_shape, target.transpose) for i in layers]


def _check(reader, where, plan):
  for param, (entries, _) in plan.items():
    for name, hf_shape, _ in entries:
      if name not in reader:
        raise ValueError(f"{where}: tensor {name!r} (for rd parameter {'/'.join(param)}) is "
                         "missing; the config does not match the weights")
      if tuple(reader.shape(name)) != hf_shape:
        raise ValueError(f"{where}: tensor {name!r} has shape {tuple(reader.shape(name))} but the "
                         f"config implies {hf_shape}; the config does not match the weights")


def load_model(path: str, *, dtype=jnp.float32, sharding: ShardingFn | None = None) -> Decoder:
  """Loads a checkpoint into a `Decoder` whose parameters have `dtype`."""
  spec, reader, where = open_checkpoint(path)
  prefix = _prefix(reader, where)
  abstract = nnx.eval_shape(lambda: Decoder(spec, dtype=dtype, rngs=nnx.Rngs(0)))
  flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  plan = {rd_path(p): (_expected(spec, rd_path(p), leaf.shape, prefix), leaf)
          for p, leaf in flat}
  _check(reader, where, plan)
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def build(param, entries, leaf):
    def read(index):  # index: tuple of slices into the rd parameter
      if param[0] != "blocks":
        return _slice(reader[entries[0][0]], entries[0][2], index, dtype)
      layers = range(spec.num_layers)[index[0]]
      return np.stack([_slice(reader[entries[i][0]], entries[i][2], index[1:], dtype)
                       for i in layers])
    target = sharding(param, leaf.shape) if sharding else default
    return jax.make_array_from_callback(leaf.shape, target, read)

  arrays = [build(path, *plan[path]) for path in (rd_path(p) for p, _ in flat)]
  return jax.tree_util.tree_unflatten(treedef, arrays)


def _slice(tensor: np.ndarray, transpose: bool, index, dtype) -> np.ndarray:
  """Slices before converting, so a memory-mapped tensor reads only the requested bytes."""
  view = tensor.T if transpose else tensor
  return np.asarray(view[tuple(index)], dtype=jnp.dtype(dtype))
