"""GPU-only checks (skipped elsewhere; CI has no GPU): cuDNN flash attention against rd's XLA
attention on the masks rd builds (causal by position, packed segments, padding, sliding window)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rd.models.layers import attend, attention_implementation, attention_mask

on_gpu = jax.default_backend() == "gpu"


def test_attention_is_xla_off_the_gpu_and_when_decoding():
  q = jnp.zeros((1, 4, 2, 64), jnp.bfloat16)
  assert attention_implementation(q, decoding=True) == "xla"
  assert attention_implementation(q.astype(jnp.float32), decoding=False) == "xla"
  assert attention_implementation(q[:, :3], decoding=False) == "xla"  # odd length
  assert attention_implementation(q, decoding=False) == ("cudnn" if on_gpu else "xla")


@pytest.mark.skipif(not on_gpu, reason="needs a GPU")
@pytest.mark.parametrize("head_dim,window", [(64, None), (256, 48)])
def test_cudnn_attention_matches_xla_values_and_gradients(head_dim, window):
  b, t, h, kv = 2, 256, 8, 2
  keys = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(keys[0], (b, t, h, head_dim), jnp.bfloat16)
  k, v = (jax.random.normal(key, (b, kv, t, head_dim), jnp.bfloat16) for key in keys[1:3])
  # Row 0: two packed segments; row 1: right padding (segment 0) after 200 tokens.
  seg = np.ones((b, t), np.int32)
  seg[0, 100:] = 2
  seg[1, 200:] = 0
  pos = np.tile(np.arange(t, dtype=np.int32), (b, 1))
  pos[0, 100:] -= 100
  mask = attention_mask(jnp.asarray(pos), jnp.asarray(seg), jnp.asarray(pos), jnp.asarray(seg),
                        window)
  valid = jnp.asarray(seg != 0)[:, :, None]
  cotangent = jax.random.normal(keys[3], (b, t, h * head_dim), jnp.float32) * valid

  def loss(impl, q, k, v):
    out = attend(q, k, v, mask, head_dim**-0.5, impl).astype(jnp.float32)
    return jnp.sum(out * cotangent), out * valid

  (_, ref), ref_grads = jax.value_and_grad(lambda *a: loss("xla", *a), (0, 1, 2), has_aux=True)(
      q, k, v)
  (_, out), grads = jax.value_and_grad(lambda *a: loss("cudnn", *a), (0, 1, 2), has_aux=True)(
      q, k, v)
  np.testing.assert_allclose(out, ref, atol=2e-2, rtol=2e-2)
  for g, r in zip(grads, ref_grads):
    g, r = np.asarray(g, np.float32), np.asarray(r, np.float32)
    assert np.abs(g - r).max() <= 3e-2 * np.abs(r).max() + 1e-2
