"""Decoder building blocks as Flax NNX modules.

Every parameter of a `Block` carries a leading layer axis `[L, ...]`; the decoder scans over it,
so inside `Block.__call__` the arrays are one layer's slice. LoRA is not module state: each call
receives this layer's `{target: (a, b)}` dict and the scale.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from rd import lora as lora_lib
from rd.models import rope
from rd.models.spec import ModelSpec

_NEG = -1e30  # finite, so fully masked (padding) rows give uniform weights instead of NaN


def _normal(rngs: nnx.Rngs, shape, dtype, std=0.02):
  return nnx.Param(jax.random.normal(rngs.params(), shape, jnp.float32).astype(dtype) * std)


@jax.custom_vjp
def matmul(x, kernel):
  """x [..., d_in] @ kernel [d_in, d_out], with a backward that transposes x explicitly for the
  kernel's gradient. Left to autodiff, XLA:CPU writes the output gradient transposed inside a
  loop fusion that runs at a few hundred MB/s: half of a small model's training step."""
  return jnp.einsum("...d,df->...f", x, kernel)


def _matmul_fwd(x, kernel):
  return matmul(x, kernel), (x, kernel)


def _matmul_bwd(saved, g):
  x, kernel = saved
  rows = x.reshape(-1, x.shape[-1])
  d_kernel = jnp.dot(rows.T, g.reshape(-1, g.shape[-1]))
  d_x = jnp.einsum("...f,df->...d", g, kernel)
  return d_x.astype(x.dtype), d_kernel.astype(kernel.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


class Linear(nnx.Module):
  """x @ kernel (+ bias) (+ LoRA). kernel is [*stack, d_in, d_out]."""

  def __init__(self, d_in, d_out, *, stack, bias, dtype, rngs):
    self.kernel = _normal(rngs, (*stack, d_in, d_out), dtype)
    self.bias = nnx.Param(jnp.zeros((*stack, d_out), dtype)) if bias else None

  def __call__(self, x, lora_ab=None, scale=1.0):
    y = matmul(x, self.kernel[...])
    if self.bias is not None:
      y = y + self.bias[...]
    if lora_ab is not None:
      y = y + lora_lib.delta(x, *lora_ab, scale).astype(y.dtype)
    return y


class RMSNorm(nnx.Module):
  """RMSNorm in fp32. Gemma scales by (1 + w) before the cast back; Llama casts, then scales by w."""

  def __init__(self, dim, *, stack, plus_one, eps, dtype):
    self.scale = nnx.Param(jnp.full((*stack, dim), 0.0 if plus_one else 1.0, dtype))
    self.plus_one = plus_one
    self.eps = eps

  def __call__(self, x):
    xf = x.astype(jnp.float32)
    normed = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    if self.plus_one:
      return (normed * (1.0 + self.scale[...].astype(jnp.float32))).astype(x.dtype)
    return self.scale[...] * normed.astype(x.dtype)


class KV(NamedTuple):
  """Every layer's keys and values for every cache slot: [L, B, kv_heads, S, head_dim].

  Head-major, so a decode step's attention is a plain batched matmul over the cache (with the
  slots second, XLA transposes the whole cache in every layer of every step: 4x slower on CPU).
  The scan over layers carries the whole stack and each layer writes its own row in place;
  passing per-layer slices through the scan instead copies the whole cache every step.
  """

  k: jax.Array
  v: jax.Array


def attention_mask(q_pos, q_seg, k_pos, k_seg, window=None):
  """[B, T, S] bool: same segment, key not padding (segment 0), key not after query.

  Causality is by position, so packed segments and left-padded KV caches need no special case.
  """
  allowed = ((q_seg[:, :, None] == k_seg[:, None, :]) & (k_seg[:, None, :] != 0)
             & (k_pos[:, None, :] <= q_pos[:, :, None]))
  if window is not None:
    allowed &= q_pos[:, :, None] - k_pos[:, None, :] < window
  return allowed


def attention_implementation(q, decoding: bool) -> str:
  """"cudnn" (flash attention: no [T, S] logits in memory) for bf16/fp16 on a GPU outside
  decoding, where cuDNN takes the shape (head size a multiple of 8 up to 256; with a mask, an
  even length); "xla" (below) everywhere else."""
  t, d = q.shape[1], q.shape[-1]
  if (jax.default_backend() == "gpu" and not decoding and d % 8 == 0 and d <= 256
      and t % 2 == 0 and q.dtype in (jnp.bfloat16, jnp.float16)):
    return "cudnn"
  return "xla"


def attend(q, k, v, mask, scale, implementation: str = "xla"):
  """Grouped-query attention. q [B,T,H,D], k/v [B,K,S,D], mask [B,T,S]; softmax in fp32."""
  if implementation == "cudnn":  # the mask becomes an additive bias inside; no gradient to it
    out = jax.nn.dot_product_attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),
                                       mask=mask[:, None], scale=scale, implementation="cudnn")
    return out.reshape(*q.shape[:2], -1)
  b, t, h, d = q.shape
  groups = h // k.shape[1]
  q = q.reshape(b, t, k.shape[1], groups, d)
  logits = jnp.einsum("btkgd,bksd->bkgts", q, k, preferred_element_type=jnp.float32) * scale
  logits = jnp.where(mask[:, None, None], logits, _NEG)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgts,bksd->btkgd", weights, v)
  return out.reshape(b, t, h * d)


class Attention(nnx.Module):

  def __init__(self, spec: ModelSpec, *, stack, dtype, rngs):
    d, h, kv, hd = spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim
    lin = lambda i, o, bias: Linear(i, o, stack=stack, bias=bias, dtype=dtype, rngs=rngs)  # noqa: E731
    self.q = lin(d, h * hd, spec.qkv_bias)
    self.k = lin(d, kv * hd, spec.qkv_bias)
    self.v = lin(d, kv * hd, spec.qkv_bias)
    self.o = lin(h * hd, d, False)
    norm = lambda: RMSNorm(hd, stack=stack, plus_one=spec.norm_plus_one, eps=spec.rms_eps,  # noqa: E731
                           dtype=dtype)
    self.q_norm = norm() if spec.qk_norm else None
    self.k_norm = norm() if spec.qk_norm else None
    self.shape = (h, kv, hd)
    self.logit_scale = spec.attn_scale

  def __call__(self, x, lora, lora_scale, sin, cos, mask, cache: KV | None, layer, index):
    b, t, _ = x.shape
    h, kv, hd = self.shape
    q = self.q(x, lora.get("q"), lora_scale).reshape(b, t, h, hd)
    k = self.k(x, lora.get("k"), lora_scale).reshape(b, t, kv, hd)
    v = self.v(x, lora.get("v"), lora_scale).reshape(b, t, kv, hd)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q, k = rope.apply_rope(q, sin, cos), rope.apply_rope(k, sin, cos)
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # head-major, as `attend` takes them
    if cache is not None:  # write these keys/values at slot `index` of row `layer`, attend to all
      at = (layer, 0, 0, index, 0)
      cache = KV(*(jax.lax.dynamic_update_slice(c, new[None].astype(c.dtype), at)
                   for c, new in ((cache.k, k), (cache.v, v))))
      k, v = cache.k[layer], cache.v[layer]
    out = attend(q, k, v, mask, self.logit_scale,
                 attention_implementation(q, decoding=cache is not None))
    return self.o(out, lora.get("o"), lora_scale), cache


class MLP(nnx.Module):

  def __init__(self, spec: ModelSpec, *, stack, dtype, rngs):
    d, f = spec.hidden_size, spec.intermediate_size
    self.gate = Linear(d, f, stack=stack, bias=False, dtype=dtype, rngs=rngs)
    self.up = Linear(d, f, stack=stack, bias=False, dtype=dtype, rngs=rngs)
    self.down = Linear(f, d, stack=stack, bias=False, dtype=dtype, rngs=rngs)
    self.activation = spec.activation

  def __call__(self, x, lora, lora_scale):
    gate = self.gate(x, lora.get("gate"), lora_scale)
    act = jax.nn.silu(gate) if self.activation == "silu" else jax.nn.gelu(gate, approximate=True)
    return self.down(act * self.up(x, lora.get("up"), lora_scale), lora.get("down"), lora_scale)


class Block(nnx.Module):
  """A stack of `spec.num_layers` pre-norm decoder layers (Gemma adds post-norms)."""

  def __init__(self, spec: ModelSpec, *, dtype, rngs):
    stack = (spec.num_layers,)
    norm = lambda: RMSNorm(spec.hidden_size, stack=stack, plus_one=spec.norm_plus_one,  # noqa: E731
                           eps=spec.rms_eps, dtype=dtype)
    self.attn_norm = norm()
    self.attn = Attention(spec, stack=stack, dtype=dtype, rngs=rngs)
    self.attn_post_norm = norm() if spec.post_norms else None
    self.mlp_norm = norm()
    self.mlp = MLP(spec, stack=stack, dtype=dtype, rngs=rngs)
    self.mlp_post_norm = norm() if spec.post_norms else None

  def __call__(self, x, lora, lora_scale, sin, cos, mask, cache, layer, index):
    y, cache = self.attn(self.attn_norm(x), lora, lora_scale, sin, cos, mask, cache, layer, index)
    if self.attn_post_norm is not None:
      y = self.attn_post_norm(y)
    x = x + y
    y = self.mlp(self.mlp_norm(x), lora, lora_scale)
    if self.mlp_post_norm is not None:
      y = self.mlp_post_norm(y)
    return x + y, cache
