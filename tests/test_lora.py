"""LoRA identities: zero-B is the base, per-example equals shared, merged equals live."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rd import lora as lora_lib
from rd.models import apply
from tests.tiny import tiny_model

jax.config.update("jax_default_matmul_precision", "highest")

TOKENS = np.arange(24).reshape(2, 12) % 97
ALL = lora_lib.LoraConfig(rank=4, alpha=8.0, targets=lora_lib.TARGETS)
run = jax.jit(apply)


def _trained(model, key=1):
  """A LoRA with non-zero B, as after some training."""
  lo = lora_lib.init(model.spec, ALL, jax.random.key(key))
  keys = iter(jax.random.split(jax.random.key(key + 1), 100))
  return lora_lib.Lora(jax.tree.map(lambda x: x + 0.05 * jax.random.normal(next(keys), x.shape),
                                    lo.weights), scale=lo.scale)


@pytest.mark.parametrize("family", ["gemma3", "qwen2"])
def test_zero_b_lora_equals_no_lora(family):
  model = tiny_model(family)
  fresh = lora_lib.init(model.spec, ALL, jax.random.key(0))
  assert all(float(jnp.abs(ab["b"]).max()) == 0 for ab in fresh.weights.values())
  np.testing.assert_array_equal(run(model, fresh, TOKENS).hidden, run(model, None, TOKENS).hidden)


def test_trained_lora_changes_the_output():
  model = tiny_model()
  diff = jnp.abs(run(model, _trained(model), TOKENS).hidden - run(model, None, TOKENS).hidden)
  assert float(diff.max()) > 1e-2


@pytest.mark.parametrize("family", ["gemma3", "qwen2"])
def test_per_example_identical_adapters_equal_shared(family):
  model = tiny_model(family)
  shared = _trained(model)
  per_example = lora_lib.broadcast(shared, TOKENS.shape[0])
  assert per_example.per_example and not shared.per_example
  np.testing.assert_allclose(run(model, per_example, TOKENS).hidden,
                             run(model, shared, TOKENS).hidden, atol=1e-5)


def test_per_example_rows_use_their_own_adapter():
  model = tiny_model()
  a, b = _trained(model, 1), _trained(model, 7)
  mixed = lora_lib.Lora(jax.tree.map(lambda x, y: jnp.stack([x, y]), a.weights, b.weights),
                        scale=a.scale)
  out = run(model, mixed, TOKENS).hidden
  np.testing.assert_allclose(out[0], run(model, a, TOKENS).hidden[0], atol=1e-5)
  np.testing.assert_allclose(out[1], run(model, b, TOKENS).hidden[1], atol=1e-5)


@pytest.mark.parametrize("family", ["gemma3", "qwen2"])
def test_merged_weights_equal_live_lora(family):
  model = tiny_model(family)
  trained = _trained(model)
  merged = lora_lib.merge(model, trained)
  np.testing.assert_allclose(run(merged, None, TOKENS).hidden, run(model, trained, TOKENS).hidden,
                             atol=1e-5)
  # merge returns a copy: the base itself is untouched
  np.testing.assert_array_equal(run(model, None, TOKENS).hidden,
                                run(tiny_model(family), None, TOKENS).hidden)


def test_param_count_and_config_errors():
  model = tiny_model()
  lo = lora_lib.init(model.spec, lora_lib.LoraConfig(rank=4, targets=("q", "v")), jax.random.key(0))
  s = model.spec
  expected = s.num_layers * 4 * (s.hidden_size + s.num_heads * s.head_dim
                                 + s.hidden_size + s.num_kv_heads * s.head_dim)
  assert lora_lib.num_params(lo) == expected
  with pytest.raises(ValueError, match="lora.targets"):
    lora_lib.LoraConfig(targets=("q", "qkv"))
  with pytest.raises(ValueError, match="merge needs a shared LoRA"):
    lora_lib.merge(model, lora_lib.broadcast(lo, 2))
