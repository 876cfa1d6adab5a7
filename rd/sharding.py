"""Meshes and shardings: logical axis names per parameter, mapped to mesh axes by rules.

The mesh has three named axes: `data` (pure data parallelism), `fsdp` (data parallelism whose
devices also split the parameters) and `tensor` (model parallelism inside each layer). The batch
is split over `data x fsdp`. A parameter dimension whose size the mesh axis does not divide is
replicated instead, so any model runs on any mesh.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical axis -> mesh axis (None: replicated).
DEFAULT_RULES = {
    "vocab": "tensor", "embed": "fsdp", "heads": "tensor", "kv_heads": "tensor",
    "mlp": "tensor", "layers": None, "norm": None, "rank": None,
}

# rd parameter path (without the layer axis) -> logical axes of its dimensions.
_PARAM_AXES = {
    ("embed",): ("vocab", "embed"),
    ("lm_head",): ("vocab", "embed"),
    ("final_norm", "scale"): ("norm",),
    ("attn", "q", "kernel"): ("embed", "heads"),
    ("attn", "k", "kernel"): ("embed", "kv_heads"),
    ("attn", "v", "kernel"): ("embed", "kv_heads"),
    ("attn", "o", "kernel"): ("heads", "embed"),
    ("attn", "q", "bias"): ("heads",),
    ("attn", "k", "bias"): ("kv_heads",),
    ("attn", "v", "bias"): ("kv_heads",),
    ("mlp", "gate", "kernel"): ("embed", "mlp"),
    ("mlp", "up", "kernel"): ("embed", "mlp"),
    ("mlp", "down", "kernel"): ("mlp", "embed"),
}


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A (data, fsdp, tensor) mesh over all devices; one size may be -1 (whatever is left)."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = [data, fsdp, tensor]
  if sizes.count(-1) > 1:
    raise ValueError(f"mesh: at most one of data/fsdp/tensor may be -1, got {sizes}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ValueError(f"mesh: data*fsdp*tensor = {sizes} does not use the {len(devices)} devices; "
                     "set config.mesh so the product equals the device count")
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_axes(path: tuple[str, ...]) -> tuple[str | None, ...]:
  """Logical axes of an rd parameter; stacked block parameters get a leading "layers"."""
  if path[0] == "blocks":
    inner = path[1:]
    axes = _PARAM_AXES.get(inner) or (("norm",) if inner[-1] == "scale" else None)
    if axes is None:
      raise KeyError(f"no logical axes for parameter {'/'.join(path)}")
    return ("layers", *axes)
  return _PARAM_AXES[path]


def spec_for(shape: Sequence[int], axes: Sequence[str | None], mesh, rules=None) -> P:
  """PartitionSpec for `shape`, replicating any dimension its mesh axis does not divide."""
  rules = rules or DEFAULT_RULES
  names = []
  for size, axis in zip(shape, axes):
    mesh_axis = rules.get(axis) if axis else None
    ok = mesh_axis is not None and size % mesh.shape[mesh_axis] == 0
    names.append(mesh_axis if ok and mesh.shape[mesh_axis] > 1 else None)
  return P(*names)


def param_sharding_fn(mesh, rules=None):
  """For `rd.weights.load.load_model(sharding=...)`: (path, shape) -> NamedSharding."""
  return lambda path, shape: NamedSharding(mesh, spec_for(shape, logical_axes(path), mesh, rules))


def place_params(base: Any, mesh, rules=None) -> Any:
  """An already loaded model moved onto `mesh` with the shardings `load_model` would give it
  (single process: every parameter must be addressable here)."""
  from rd.weights.names import rd_path  # pylint: disable=import-outside-toplevel
  shard = param_sharding_fn(mesh, rules)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jax.device_put(x, shard(rd_path(path), x.shape)), base)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh, ndim: int = 2) -> NamedSharding:
  """Leading (example) dimension split over data x fsdp; the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def shard_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Per-process numpy batch -> global arrays (each host passes its own rows)."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), v)
          for k, v in batch.items()}


def tree_shardings(tree: Any, sharding) -> Any:
  return jax.tree.map(lambda _: sharding, tree)
