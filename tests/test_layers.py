"""The layers' hand-written gradients equal autodiff's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rd.models.layers import matmul


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_matmul_gradients_equal_autodiffs_of_the_einsum(dtype, tol):
  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (3, 5, 16), dtype)
  w = jax.random.normal(kw, (16, 24), dtype)
  weights = jax.random.normal(kg, (3, 5, 24), jnp.float32)  # a loss that weighs every output

  def loss(f):
    return lambda x, w: jnp.sum(f(x, w).astype(jnp.float32) * weights)

  einsum = lambda x, w: jnp.einsum("...d,df->...f", x, w)  # noqa: E731
  with jax.default_matmul_precision("highest"):
    ours = jax.grad(loss(matmul), argnums=(0, 1))(x, w)
    reference = jax.grad(loss(einsum), argnums=(0, 1))(x, w)
  for got, want in zip(ours, reference):
    assert got.dtype == want.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               rtol=tol, atol=tol * np.abs(np.asarray(want, np.float32)).max())
  np.testing.assert_array_equal(matmul(x, w), einsum(x, w))  # the forward is the einsum
