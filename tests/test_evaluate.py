"""Answer accuracy (greedy answers, first line, facts' scoring) and drift KL on a tiny model."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from rd import evaluate
from rd import lora as lora_lib
from rd.data.examples import Example
from rd.generate import generate_text
from rd.models import Decoder, from_hf_config
from tests.test_data_helpers import tiny_tokenizer
from tests.tiny import CONFIGS


@pytest.fixture(scope="module")
def model():
  """A tiny random Gemma 3 whose vocabulary covers the tiny tokenizer, with sharp logits."""
  tok = tiny_tokenizer()
  cfg = {**CONFIGS["gemma3"], "vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
         "eos_token_id": tok.eos_token_id}
  base = Decoder(from_hf_config(cfg), rngs=nnx.Rngs(0))
  base.embed[...] = base.embed[...] * 8.0
  return base, tok


def _qa(query, answer):
  return Example(context="", query=query, response=f" {answer}\n", meta={"answer": answer})


def test_scoring_cuts_at_the_first_line(monkeypatch):
  completions = [" 1969\nQuestion: when?", "\n\n the Violin.\nmore", " 19690\n", " blue and red"]
  monkeypatch.setattr(evaluate, "generate_text", lambda *a, **k: completions)
  examples = [_qa("a", "1969"), _qa("b", "violin"), _qa("c", "1969"), _qa("d", "red")]
  r = evaluate.answer_accuracy(None, None, tiny_tokenizer(), examples, lambda e: e.query,
                               bucket=8)
  assert [p["prediction"] for p in r["predictions"]] == ["1969", "the Violin.", "19690",
                                                         "blue and red"]
  assert [p["exact_match"] for p in r["predictions"]] == [True, True, False, False]
  assert [p["contains"] for p in r["predictions"]] == [True, True, False, True]
  assert (r["exact_match"], r["contains"], r["n"]) == (0.5, 0.75, 4)


def test_answer_accuracy_on_a_real_model_with_forced_answers(model):
  """Gold answers set to what the model answers greedily (forced right) or to a word it never
  says (forced wrong): accuracy is exactly the right fraction, in any batch layout."""
  base, tok = model
  prompts = ["the cat sat on", "Question: what is two plus two?", "the quick brown fox",
             "Rule: always answer", "the lazy dog"]
  completions = generate_text(base, None, tok, prompts, max_new_tokens=6, batch_size=8,
                              bucket=16)
  firsts = [c.strip().split("\n")[0].strip() for c in completions]
  right = [i for i, f in enumerate(firsts) if any(ch.isalnum() for ch in f)]
  assert len(right) >= 3, completions  # the model says something scoreable
  examples = [_qa(prompts[i], firsts[i]) for i in right] + [_qa(prompts[0], "zzzqqq")]
  r = evaluate.answer_accuracy(base, None, tok, examples, lambda e: e.query, max_new_tokens=6,
                               batch_size=3)
  assert r["n"] == len(right) + 1
  assert r["exact_match"] == pytest.approx(len(right) / (len(right) + 1))
  assert r["contains"] == pytest.approx(len(right) / (len(right) + 1))
  assert not r["predictions"][-1]["exact_match"]
  assert evaluate.answer_accuracy(base, None, tok, [], lambda e: e.query)["n"] == 0


def test_drift_kl_is_zero_for_a_zero_lora_and_positive_otherwise(model):
  base, tok = model
  cfg = lora_lib.LoraConfig(rank=4, targets=("q", "v", "up"))
  zero = lora_lib.init(base.spec, cfg, jax.random.key(0))  # B = 0: the base itself
  prompts = evaluate.DRIFT_PROMPTS[:5]
  assert evaluate.drift_kl(base, None, tok, prompts, batch_size=4) == 0.0
  assert abs(evaluate.drift_kl(base, zero, tok, prompts, batch_size=4)) < 1e-6
  moved = lora_lib.Lora(jax.tree.map(lambda x: x + 0.05 * jnp.sign(jnp.sin(
      jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape) + 1.0)), zero.weights),
                        scale=zero.scale)
  small = evaluate.drift_kl(base, moved, tok, prompts, batch_size=4)
  big = lora_lib.Lora(jax.tree.map(lambda x: 4 * x, moved.weights), scale=moved.scale)
  assert 0 < small < evaluate.drift_kl(base, big, tok, prompts, batch_size=4)


def test_drift_batch_rows_cover_every_prompt_position():
  tok = tiny_tokenizer()
  batch = evaluate.drift_batch(tok, ["the cat", "the quick brown fox jumps"], batch_size=3)
  lengths = batch["student_segment_ids"].sum(1)
  assert list(batch["row_mask"].sum(1)) == list(lengths)
  assert lengths[2] == 0  # a padding row
  assert batch["teacher_tokens"][0, 0] == tok.bos_token_id
  assert (batch["student_rows"][1, :lengths[1]] == range(lengths[1])).all()
  assert (batch["teacher_tokens"] == batch["student_tokens"]).all()
