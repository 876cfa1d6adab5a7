"""rd's own adapter files: a trained LoRA as `adapter.safetensors` + `adapter.json`.

Written at the end of every distillation run (`<workdir>/lora`), and read back as a teacher
LoRA (recursive/enhanced distillation) or a LoRA init. Tensor names are `<target>.a` and
`<target>.b` with the layer axis first; the JSON holds the scale and shapes.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from safetensors.numpy import load_file, save_file

from rd.lora import Lora

_WEIGHTS, _META = "adapter.safetensors", "adapter.json"


def save(lora: Lora, directory: str) -> None:
  """Writes a shared LoRA (process 0 only)."""
  if lora.per_example:
    raise ValueError("only a shared LoRA can be saved as an adapter")
  weights = {f"{t}.{m}": np.asarray(jax.device_get(x), np.float32)
             for t, ab in lora.weights.items() for m, x in ab.items()}
  if jax.process_index() != 0:
    return
  os.makedirs(directory, exist_ok=True)
  save_file(weights, os.path.join(directory, _WEIGHTS))
  with open(os.path.join(directory, _META), "w") as f:
    json.dump({"format": "rd-lora-v1", "scale": lora.scale,
               "targets": sorted(lora.weights),
               "rank": int(next(iter(weights.values())).shape[-1])}, f, indent=2)


def load(directory: str) -> Lora:
  """Reads an adapter directory, or the `lora/` folder of an rd workdir."""
  if os.path.isdir(os.path.join(directory, "lora")):
    directory = os.path.join(directory, "lora")
  meta_path = os.path.join(directory, _META)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"{directory} has no {_META}: not an rd adapter (a finished rd "
                            "run writes one to <workdir>/lora)")
  with open(meta_path) as f:
    meta = json.load(f)
  tensors = load_file(os.path.join(directory, _WEIGHTS))
  weights = {t: {"a": tensors[f"{t}.a"], "b": tensors[f"{t}.b"]} for t in meta["targets"]}
  return Lora(jax.tree.map(jax.numpy.asarray, weights), scale=float(meta["scale"]))
