"""KV-cache generation equals recomputing the whole sequence at every step."""

import jax
import numpy as np
import pytest

from rd import generate as gen
from rd.models import apply, lm_logits
from tests.tiny import tiny_model

jax.config.update("jax_default_matmul_precision", "highest")

PROMPTS = [[2, 5, 9, 11, 3, 7, 8, 4, 6, 10], [2, 17], [2, 30, 31, 32, 33]]


@jax.jit
def _next_logits(model, tokens, length):
  """Full forward over a right-padded row; logits after its last real token."""
  segments = (np.arange(tokens.shape[1]) < length)[None].astype(np.int32)
  hidden = apply(model, None, tokens, segment_ids=segments).hidden
  return lm_logits(model, hidden[0, length - 1])


def _greedy_by_recompute(model, prompt, steps, width=32):
  seq, logprobs = list(prompt), []
  for _ in range(steps):
    padded = np.zeros((1, width), np.int32)
    padded[0, :len(seq)] = seq
    logits = np.asarray(_next_logits(model, padded, len(seq)))
    tok = int(np.argmax(logits))
    logprobs.append(float(jax.nn.log_softmax(logits)[tok]))
    seq.append(tok)
  return seq[len(prompt):], logprobs


@pytest.mark.parametrize("family", ["gemma3", "qwen2"])
def test_cached_greedy_equals_recompute(family):
  model = tiny_model(family, scale=20.0)
  out = gen.generate(model, None, PROMPTS, max_new_tokens=9, eos_ids=(), bucket=8)
  for row, prompt in enumerate(PROMPTS):  # rows have different left padding; window is 6
    tokens, logprobs = _greedy_by_recompute(model, prompt, 9)
    assert out.tokens[row].tolist() == tokens
    np.testing.assert_allclose(out.logprobs[row], logprobs, atol=1e-4)


def test_eos_stops_a_row_and_pads_after_it():
  model = tiny_model(seed=1)
  free = gen.generate(model, None, PROMPTS, max_new_tokens=6, eos_ids=(), bucket=8)
  # A (row, step) whose token is new in that row, so it can serve as that row's EOS.
  row, stop = next((r, i) for r in range(len(PROMPTS)) for i in range(1, 6)
                   if free.tokens[r, i] not in free.tokens[r, :i])
  out = gen.generate(model, None, PROMPTS, max_new_tokens=6, eos_ids=(int(free.tokens[row, stop]),),
                     pad_id=0, bucket=8)
  assert out.lengths[row] == stop + 1
  assert out.tokens[row, :stop + 1].tolist() == free.tokens[row, :stop + 1].tolist()
  assert (out.tokens[row, stop + 1:] == 0).all() and (out.logprobs[row, stop + 1:] == 0).all()


def test_top_k_one_and_tiny_top_p_are_greedy():
  model = tiny_model(scale=20.0)
  greedy = gen.generate(model, None, PROMPTS, max_new_tokens=5, eos_ids=(), bucket=8)
  for sampling in (gen.Sampling(temperature=1.0, top_k=1), gen.Sampling(temperature=1.0, top_p=1e-6)):
    out = gen.generate(model, None, PROMPTS, max_new_tokens=5, eos_ids=(), bucket=8,
                       sampling=sampling, seed=3)
    assert out.tokens.tolist() == greedy.tokens.tolist()


def test_sampling_is_seeded_and_varies():
  model = tiny_model()
  kw = dict(max_new_tokens=8, eos_ids=(), bucket=8, sampling=gen.Sampling(temperature=1.0))
  a = gen.generate(model, None, PROMPTS, seed=1, **kw).tokens
  assert (a == gen.generate(model, None, PROMPTS, seed=1, **kw).tokens).all()
  assert (a != gen.generate(model, None, PROMPTS, seed=2, **kw).tokens).any()


def test_same_bucket_does_not_recompile():
  model = tiny_model()
  gen.generate(model, None, PROMPTS, max_new_tokens=4, eos_ids=(), bucket=16)
  before = gen._generate._cache_size()
  gen.generate(model, None, [[2, 3, 4], [2, 9], [2, 5, 6, 7, 8, 9, 10]], max_new_tokens=4,
               eos_ids=(), bucket=16)
  assert gen._generate._cache_size() == before


def test_bad_sampling_settings_are_rejected():
  with pytest.raises(ValueError, match="top_p"):
    gen.Sampling(top_p=0.0)
