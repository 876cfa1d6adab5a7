"""The hypernetwork: its LoRA's shapes, the base's exact outputs at init, the instruction
encoder, and its files."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rd.methods.tagi import hypernet
from rd import lora as lora_lib
from rd.models import Decoder, from_hf_config
from rd.models import apply as apply_eager
from tests.test_data_helpers import tiny_tokenizer
from tests.tiny import CONFIGS

ALL = ("q", "k", "v", "o", "gate", "up", "down")
apply = jax.jit(apply_eager)  # one compilation per shape, not one per op
CFG = hypernet.HypernetConfig(hidden=16, rank=4, alpha=8.0, targets=ALL)


@pytest.fixture(scope="module")
def base():
  cfg = {**CONFIGS["gemma3"], "vocab_size": len(tiny_tokenizer())}
  return Decoder(from_hf_config(cfg), rngs=nnx.Rngs(0))


def _embeddings(base, n=3, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, base.spec.hidden_size)) * 5,
                     jnp.float32)


def test_shapes_per_target_and_layer(base):
  params = hypernet.init(base.spec, CFG, jax.random.key(0))
  lora = hypernet.generate(params, _embeddings(base), base.spec, CFG)
  assert lora.per_example and lora.scale == CFG.alpha / CFG.rank
  assert sorted(lora.weights) == sorted(ALL)
  n_layers = base.spec.num_layers
  for target in ALL:
    d_in, d_out = lora_lib.target_dims(base.spec, target)
    assert lora.weights[target]["a"].shape == (3, n_layers, d_in, CFG.rank)
    assert lora.weights[target]["b"].shape == (3, n_layers, CFG.rank, d_out)
  one = hypernet.task_lora(params, _embeddings(base)[1], base.spec, CFG)
  assert not one.per_example
  np.testing.assert_allclose(one.weights["q"]["a"], lora.weights["q"]["a"][1], atol=1e-6)


def test_init_student_is_exactly_the_base(base):
  params = hypernet.init(base.spec, CFG, jax.random.key(0))
  lora = hypernet.generate(params, _embeddings(base, n=2), base.spec, CFG)
  for target in ALL:
    assert not np.any(lora.weights[target]["b"])  # B = 0 ...
    assert np.abs(lora.weights[target]["a"]).max() > 0  # ... A is not, so B gets gradients
  tokens = jnp.arange(1, 17).reshape(2, 8)
  np.testing.assert_array_equal(apply(base, lora, tokens).hidden, apply(base, None, tokens).hidden)


def test_a_starts_where_a_per_task_lora_of_the_same_seed_starts(base):
  key = jax.random.key(7)
  params = hypernet.init(base.spec, CFG, key)
  start = lora_lib.init(base.spec, CFG.lora_config(), key)
  for target in ALL:
    np.testing.assert_array_equal(params["heads"][target]["a_bias"].reshape(
        start.weights[target]["a"].shape), start.weights[target]["a"])


def test_the_instruction_decides_the_adapter_once_b_is_trained(base):
  params = hypernet.init(base.spec, CFG, jax.random.key(0))
  shape = params["heads"]["q"]["b_w"].shape
  params["heads"]["q"]["b_w"] = jnp.asarray(np.random.default_rng(3).normal(size=shape),
                                            jnp.float32)
  lora = hypernet.generate(params, _embeddings(base, n=2), base.spec, CFG)
  b = lora.weights["q"]["b"]
  assert np.abs(b[0] - b[1]).max() > 1e-3
  tokens = jnp.broadcast_to(jnp.arange(1, 9), (2, 8))
  hidden = apply(base, lora, tokens).hidden
  assert np.abs(hidden[0] - hidden[1]).max() > 1e-4  # same input, different task adapters
  layers = np.abs(b[0] - b[1]).reshape(base.spec.num_layers, -1).max(-1)
  assert np.all(layers > 0)  # the layer embedding reaches every layer


def test_encoder_tokens_and_precomputed_embeddings_agree(base):
  tok = tiny_tokenizer()
  texts = ["Rule: always answer in French.", "the cat sat on the mat"]
  params = hypernet.init(base.spec, CFG, jax.random.key(0))
  params["heads"]["v"]["b_w"] = jnp.ones_like(params["heads"]["v"]["b_w"]) * 0.01
  ids = hypernet.instruction_tokens(tok, texts, length=16)
  assert ids["tokens"][0, 0] == tok.bos_token_id and ids["segment_ids"][1].sum() < 16
  hyper_apply = jax.jit(functools.partial(hypernet.hypernet_apply, cfg=CFG))
  from_tokens = hyper_apply(params, base, {"instruction_tokens": ids["tokens"],
                                           "instruction_segment_ids": ids["segment_ids"]})
  embeddings = hypernet.embed_texts(base, tok, texts, length=16, batch_size=4)
  assert embeddings.shape == (2, base.spec.hidden_size)
  from_table = hyper_apply(params, base, {"instruction_embedding": embeddings})
  for x, y in zip(jax.tree.leaves(from_tokens), jax.tree.leaves(from_table)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  # Padding is not pooled: a longer pad leaves the embedding unchanged.
  longer = hypernet.embed_texts(base, tok, texts, length=24, batch_size=2)
  np.testing.assert_allclose(longer, embeddings, rtol=1e-5, atol=1e-5)


def test_save_and_load_round_trip(base, tmp_path):
  params = hypernet.init(base.spec, CFG, jax.random.key(0))
  hypernet.save(params, CFG, str(tmp_path / "hypernet"))
  loaded, cfg = hypernet.load(str(tmp_path))  # a workdir holding hypernet/
  assert cfg == CFG
  assert jax.tree.structure(loaded) == jax.tree.structure(params)
  for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, y)
  assert hypernet.num_params(loaded) == hypernet.num_params(params)


def test_bad_config_is_refused():
  with pytest.raises(ValueError, match="unknown"):
    hypernet.HypernetConfig(targets=("q", "wq"))
  with pytest.raises(ValueError, match="hidden"):
    hypernet.HypernetConfig(hidden=0)
