"""Gemma 3 270M (the embedded GGUF): rd against transformers loaded from the same file.

Slow (loads the real model twice): `python -m pytest -m slow tests/test_real_model.py`.
"""

import os

import jax
import numpy as np
import pytest

from rd import generate as gen
from rd.embedded import default_model_path
from rd.models import apply, lm_logits
from rd.tokenizer import load_tokenizer
from rd.weights.load import load_model

pytestmark = pytest.mark.slow
jax.config.update("jax_default_matmul_precision", "highest")

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "The three primary colors are red,",
    "Water boils at a temperature of",
    "Monday, Tuesday, Wednesday,",
    "The largest planet in our solar system is",
]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def models():
  os.environ["HF_HUB_OFFLINE"] = "1"
  import torch
  import transformers

  path = default_model_path()
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
  return load_model("gemma3-270m"), reference, load_tokenizer("gemma3-270m")


def test_greedy_continuations_equal_transformers(models):
  import torch

  base, reference, tokenizer = models
  ids = [tokenizer.encode(p) for p in PROMPTS]
  ours = gen.generate(base, None, ids, max_new_tokens=NEW_TOKENS, eos_ids=(), bucket=16)
  for row, prompt_ids in enumerate(ids):
    with torch.no_grad():
      theirs = reference.generate(torch.tensor([prompt_ids]), max_new_tokens=NEW_TOKENS,
                                  min_new_tokens=NEW_TOKENS, do_sample=False)
    expected = theirs[0, len(prompt_ids):].tolist()
    assert ours.tokens[row].tolist() == expected, (
        PROMPTS[row], tokenizer.decode(ours.tokens[row]), tokenizer.decode(expected))


def test_logits_on_a_64_token_prompt_match_transformers(models):
  import torch

  base, reference, tokenizer = models
  text = ("Context distillation trains a model to behave, without a prompt, the way it behaves "
          "with that prompt. The teacher is the frozen model with the context; the student is "
          "the same model plus a small adapter, and it learns to match the teacher's next-token "
          "distributions on the response tokens, which moves the context into the weights.")
  ids = np.asarray([tokenizer.encode(text)[:64]])
  assert ids.shape == (1, 64)
  ours = np.asarray(lm_logits(base, apply(base, None, ids).hidden))
  with torch.no_grad():
    theirs = reference(torch.tensor(ids)).logits.numpy()
  assert np.abs(ours - theirs).max() <= 1e-3
  assert (ours.argmax(-1) == theirs.argmax(-1)).all()
