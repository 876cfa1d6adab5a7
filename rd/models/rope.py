"""Rotary position embeddings, in the "rotate half" layout that Hugging Face checkpoints use."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from rd.models.spec import Rope


def inverse_frequencies(rope: Rope, head_dim: int) -> np.ndarray:
  """Per-pair inverse frequencies [head_dim // 2], with linear or Llama 3 scaling applied."""
  inv = 1.0 / (rope.theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
  if rope.rope_type == "linear":
    return (inv / rope.factor).astype(np.float32)
  if rope.rope_type == "llama3":
    # Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    old = rope.original_max_position_embeddings
    low_wavelen = old / rope.low_freq_factor
    high_wavelen = old / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    smooth = (old / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    mid = (1 - smooth) * inv / rope.factor + smooth * inv
    inv = np.where(wavelen > low_wavelen, inv / rope.factor, np.where(wavelen < high_wavelen, inv, mid))
  return inv.astype(np.float32)


def sin_cos(positions: jnp.ndarray, inv_freq: np.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """[B, T] integer positions -> (sin, cos), each [B, T, head_dim] in fp32."""
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.sin(angles), jnp.cos(angles)


def apply_rope(x: jnp.ndarray, sin: jnp.ndarray, cos: jnp.ndarray) -> jnp.ndarray:
  """x: [B, T, heads, head_dim]; rotation computed in fp32, result in x's dtype."""
  xf = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  return (xf * cos[:, :, None, :] + rotated * sin[:, :, None, :]).astype(x.dtype)
