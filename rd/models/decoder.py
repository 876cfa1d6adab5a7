"""The decoder as a pure function: `apply(base, lora, tokens, ...)` and `lm_logits(base, rows)`.

`base` is a `Decoder` module. NNX modules are pytrees, so `base` passes straight through
`jax.jit`; its arrays are the leaves and its `ModelSpec` rides along as static structure.
Teacher and student are the same `apply` with different `lora` and tokens.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rd import lora as lora_lib
from rd.models import rope
from rd.models.layers import Block, KV, RMSNorm, attention_mask
from rd.models.spec import ModelSpec

# Rematerialization policies for the scanned layer body (what the backward pass may keep).
REMAT_POLICIES = {
    "none": None,  # no remat: keep every activation
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Decoder(nnx.Module):
  """Embedding, `spec.num_layers` stacked blocks, final norm, and the (possibly tied) head."""

  def __init__(self, spec: ModelSpec, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.spec = spec
    self.embed = nnx.Param(
        (jax.random.normal(rngs.params(), (spec.vocab_size, spec.hidden_size)) * 0.02).astype(dtype))
    self.blocks = Block(spec, dtype=dtype, rngs=rngs)
    self.final_norm = RMSNorm(spec.hidden_size, stack=(), plus_one=spec.norm_plus_one,
                              eps=spec.rms_eps, dtype=dtype)
    self.lm_head = None if spec.tie_embeddings else nnx.Param(
        (jax.random.normal(rngs.params(), (spec.vocab_size, spec.hidden_size)) * 0.02).astype(dtype))


class Cache(NamedTuple):
  """KV cache for generation. Slots are written left to right; `index` is the next free slot."""

  layers: KV  # k, v: [L, B, kv_heads, S, head_dim], written in place
  positions: jax.Array  # [B, S] position of the token in each slot
  segment_ids: jax.Array  # [B, S] 0 for empty or padding slots
  index: jax.Array  # int32 scalar


class Out(NamedTuple):
  hidden: jax.Array  # [B, T, d] after the final norm
  captured: jax.Array | None  # [len(capture), B, T, d]: outputs of the requested blocks
  cache: Cache | None


def init_cache(spec: ModelSpec, batch: int, length: int, dtype=jnp.float32) -> Cache:
  shape = (spec.num_layers, batch, spec.num_kv_heads, length, spec.head_dim)
  return Cache(KV(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)),
               jnp.zeros((batch, length), jnp.int32), jnp.zeros((batch, length), jnp.int32),
               jnp.zeros((), jnp.int32))


def embed(base: Decoder, tokens: jax.Array) -> jax.Array:
  table = base.embed[...]
  x = jnp.take(table, tokens, axis=0)
  if base.spec.scale_embeddings:  # the scale is rounded to the weights' dtype, as in Gemma
    x = x * jnp.asarray(base.spec.hidden_size**0.5, table.dtype)
  return x


def apply(base: Decoder, lora: lora_lib.Lora | None, tokens: jax.Array,
          positions: jax.Array | None = None, segment_ids: jax.Array | None = None, *,
          capture: Sequence[int] = (), cache: Cache | None = None, remat: str = "none") -> Out:
  """Runs the decoder over `tokens` [B, T].

  positions: [B, T] int (default 0..T-1). segment_ids: [B, T] int, 0 marks padding; tokens
  attend only within their own segment (packing). capture: block indices whose outputs to
  return. cache: attend to and extend a KV cache (generation). Logits are not computed here.
  """
  spec = base.spec
  b, t = tokens.shape
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
  if segment_ids is None:
    segment_ids = jnp.ones((b, t), jnp.int32)
  k_pos, k_seg, index = positions, segment_ids, jnp.zeros((), jnp.int32)
  if cache is not None:
    index = cache.index
    k_pos = jax.lax.dynamic_update_slice_in_dim(cache.positions, positions, index, axis=1)
    k_seg = jax.lax.dynamic_update_slice_in_dim(cache.segment_ids, segment_ids, index, axis=1)

  # Sliding and global layers differ only in mask and RoPE base; both variants are built once
  # here and each scanned layer picks its own.
  sliding = spec.sliding_window is not None
  global_mask = attention_mask(positions, segment_ids, k_pos, k_seg)
  sin_g, cos_g = rope.sin_cos(positions, rope.inverse_frequencies(spec.rope_global, spec.head_dim))
  if sliding:
    local_mask = attention_mask(positions, segment_ids, k_pos, k_seg, spec.sliding_window)
    sin_l, cos_l = rope.sin_cos(
        positions, rope.inverse_frequencies(spec.rope_local or spec.rope_global, spec.head_dim))
  lora_scale = lora.scale if lora is not None else 1.0

  def layer(carry, xs):
    x, kv = carry
    block, layer_lora, is_sliding, i = xs
    mask, sin, cos = global_mask, sin_g, cos_g
    if sliding:
      mask, sin, cos = (jnp.where(is_sliding, local, glob) for local, glob in
                        ((local_mask, global_mask), (sin_l, sin_g), (cos_l, cos_g)))
    x, kv = block(x, layer_lora, lora_scale, sin, cos, mask, kv, i, index)
    # With `capture`, every layer's output is stacked and the requested ones picked after the
    # scan: simple, and [L, B, T, d] is small next to the activations remat already keeps.
    return (x, kv), x if capture else None

  if remat not in REMAT_POLICIES:
    raise ValueError(f"remat={remat!r}; choose from {sorted(REMAT_POLICIES)}")
  if remat != "none":
    layer = jax.checkpoint(layer, policy=REMAT_POLICIES[remat])
  xs = (base.blocks, lora_lib.layer_major(lora), jnp.asarray(spec.is_sliding),
        jnp.arange(spec.num_layers))
  kv = cache.layers if cache is not None else None
  (x, kv), per_layer = jax.lax.scan(layer, (embed(base, tokens), kv), xs)

  captured = per_layer[jnp.asarray(capture)] if capture else None
  new_cache = None
  if cache is not None:
    new_cache = Cache(kv, k_pos, k_seg, index + t)
  return Out(base.final_norm(x), captured, new_cache)


def lm_logits(base: Decoder, hidden: jax.Array) -> jax.Array:
  """fp32 logits [..., V] for the given hidden rows [..., d] (fp32 accumulation)."""
  head = base.embed[...] if base.spec.tie_embeddings else base.lm_head[...]
  logits = jnp.einsum("...d,vd->...v", hidden, head, preferred_element_type=jnp.float32)
  cap = base.spec.final_logit_softcap
  if cap:
    logits = jnp.tanh(logits / cap) * cap
  return logits
