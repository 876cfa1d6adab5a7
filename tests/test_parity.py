"""rd's logits and hidden states equal transformers' (PyTorch) on tiny random models."""

import jax
import numpy as np
import pytest

from rd.models import apply, lm_logits
from rd.weights.load import load_model
from tests import hf_reference

jax.config.update("jax_default_matmul_precision", "highest")


def _padded_batch(vocab, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, vocab, size=(3, 12))
  mask = np.ones_like(tokens)
  mask[0, 9:] = 0  # right padding, different lengths per row
  mask[2, 5:] = 0
  return tokens, mask


@pytest.mark.parametrize("family", sorted(hf_reference.FAMILIES))
def test_logits_and_hidden_states_match_transformers(family, tmp_path):
  model = hf_reference.make_hf_model(family, str(tmp_path))
  tokens, mask = _padded_batch(model.config.vocab_size)
  ref_logits, ref_hidden = hf_reference.hf_forward(model, tokens, mask)

  base = load_model(str(tmp_path))
  layers = base.spec.num_layers
  out = jax.jit(apply, static_argnames="capture")(
      base, None, tokens, segment_ids=mask, capture=tuple(range(layers - 1)))
  logits = np.asarray(lm_logits(base, out.hidden))

  real = mask.astype(bool)
  assert np.abs(logits - ref_logits)[real].max() <= 1e-4
  for i in range(layers - 1):  # HF hidden_states[i + 1] is the output of block i
    assert np.abs(np.asarray(out.captured[i]) - ref_hidden[i + 1])[real].max() <= 1e-4
  assert np.abs(np.asarray(out.hidden) - ref_hidden[-1])[real].max() <= 1e-4
