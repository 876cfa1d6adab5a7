"""LoRA as a separate pytree, passed to `apply` at call time and never stored in the model.

`Lora.weights` maps a target ("q", "k", "v", "o", "gate", "up", "down") to `{"a", "b"}`:

* shared:       a [L, d_in, r],    b [L, r, d_out]     (one adapter for the whole batch)
* per-example:  a [B, L, d_in, r], b [B, L, r, d_out]  (what a hypernetwork emits)

The update of a target's output is `scale * (x @ a) @ b` with `scale = alpha / rank`. B starts at
zero, so a fresh student computes exactly what the base model computes.
"""

from __future__ import annotations

import dataclasses
import math
import jax
import jax.numpy as jnp
from flax import struct

from rd.models.spec import ModelSpec

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  rank: int = 16
  alpha: float = 16.0
  targets: tuple[str, ...] = ("q", "k", "v", "o")

  def __post_init__(self):
    unknown = sorted(set(self.targets) - set(TARGETS))
    if unknown:
      raise ValueError(f"lora.targets: unknown {unknown}; choose from {TARGETS}")
    if self.rank < 1:
      raise ValueError(f"lora.rank must be >= 1, got {self.rank}")


@struct.dataclass
class Lora:
  weights: dict[str, dict[str, jax.Array]]
  scale: float = struct.field(pytree_node=False, default=1.0)

  @property
  def per_example(self) -> bool:
    return next(iter(self.weights.values()))["a"].ndim == 4


def target_dims(spec: ModelSpec, target: str) -> tuple[int, int]:
  """(d_in, d_out) of the projection a LoRA target adapts."""
  d, f = spec.hidden_size, spec.intermediate_size
  q, kv = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
  return {"q": (d, q), "k": (d, kv), "v": (d, kv), "o": (q, d),
          "gate": (d, f), "up": (d, f), "down": (f, d)}[target]


def init(spec: ModelSpec, config: LoraConfig, key: jax.Array, dtype=jnp.float32) -> Lora:
  """A ~ U(+-1/sqrt(d_in)) as in PEFT, B = 0."""
  weights = {}
  for target, k in zip(config.targets, jax.random.split(key, len(config.targets))):
    d_in, d_out = target_dims(spec, target)
    bound = 1.0 / math.sqrt(d_in)
    weights[target] = {
        "a": jax.random.uniform(k, (spec.num_layers, d_in, config.rank), dtype, -bound, bound),
        "b": jnp.zeros((spec.num_layers, config.rank, d_out), dtype)}
  return Lora(weights, scale=config.alpha / config.rank)


def flops_per_token(spec: ModelSpec, config: LoraConfig) -> float:
  """Forward FLOPs a LoRA adds per token (unmerged: x @ A, then @ B, on every target)."""
  return spec.num_layers * sum(2 * config.rank * sum(target_dims(spec, t))
                               for t in config.targets)


def num_params(lora: Lora) -> int:
  return sum(x.size for x in jax.tree.leaves(lora))


def delta(x: jax.Array, a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
  """scale * (x @ a) @ b for x [B, T, d_in]; a is [d_in, r] (shared) or [B, d_in, r]."""
  if a.ndim == 2:
    return scale * ((x @ a.astype(x.dtype)) @ b.astype(x.dtype))
  xa = jnp.einsum("btd,bdr->btr", x, a.astype(x.dtype))
  return scale * jnp.einsum("btr,brf->btf", xa, b.astype(x.dtype))


def layer_major(lora: Lora | None) -> dict[str, tuple[jax.Array, jax.Array]]:
  """{target: (a, b)} with the layer axis first, ready to be scanned over with the blocks."""
  if lora is None:
    return {}
  move = (lambda x: jnp.moveaxis(x, 1, 0)) if lora.per_example else (lambda x: x)
  return {t: (move(ab["a"]), move(ab["b"])) for t, ab in lora.weights.items()}


def broadcast(lora: Lora, batch: int) -> Lora:
  """Shared -> per-example LoRA with `batch` identical copies (for tests and mixed batches)."""
  tile = lambda x: jnp.broadcast_to(x, (batch, *x.shape))  # noqa: E731
  return Lora(jax.tree.map(tile, lora.weights), scale=lora.scale)


def _projection(model, target: str):
  owner = model.blocks.attn if target in ("q", "k", "v", "o") else model.blocks.mlp
  return getattr(owner, target)


def merge(base, lora: Lora):
  """Returns a copy of `base` with `W + scale * A @ B` folded into each adapted kernel."""
  if lora.per_example:
    raise ValueError("merge needs a shared LoRA; a per-example LoRA has one adapter per row")
  merged = jax.tree.map(lambda x: x, base)  # fresh module objects; unchanged arrays are shared
  for target, ab in lora.weights.items():
    linear = _projection(merged, target)
    kernel = linear.kernel[...]
    update = lora.scale * jnp.einsum("lir,lro->lio", ab["a"].astype(jnp.float32),
                                     ab["b"].astype(jnp.float32))
    linear.kernel[...] = (kernel.astype(jnp.float32) + update).astype(kernel.dtype)
  return merged
