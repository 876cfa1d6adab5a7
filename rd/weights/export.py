"""Writes a `Decoder` as a Hugging Face model directory (config.json + model.safetensors).

The inverse of `rd.weights.load`: stacked block parameters are split back into per-layer HF
tensors, kernels transposed to torch's [out, in]. transformers loads the result directly.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from safetensors.flax import save_file

from rd.models.decoder import Decoder
from rd.models.spec import to_hf_config
from rd.weights.names import hf_tensor, rd_path


def hf_state_dict(base: Decoder) -> dict[str, jax.Array]:
  """HF tensor name -> array, gathered to this host."""
  tensors = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(base)[0]:
    names = rd_path(path)
    target = hf_tensor(names, base.spec)
    value = np.asarray(jax.device_get(leaf))
    layers = enumerate(value) if names[0] == "blocks" else [(None, value)]
    for i, tensor in layers:
      tensors[target.name.format(i=i)] = tensor.T if target.transpose else tensor
  return tensors


def save_hf(base: Decoder, directory: str) -> None:
  """Writes config.json and model.safetensors (only process 0 writes)."""
  tensors = hf_state_dict(base)
  if jax.process_index() != 0:
    return
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(to_hf_config(base.spec), f, indent=2)
  save_file({k: jax.numpy.asarray(np.ascontiguousarray(v)) for k, v in tensors.items()},
            os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
