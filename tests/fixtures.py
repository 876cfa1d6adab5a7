"""On-disk fixtures for job-level tests: a tiny model directory with a tokenizer, a JSONL task."""

import os
import random

import jax
from flax import nnx

from rd.data.examples import Example, write_jsonl
from rd.models import Decoder, from_hf_config
from rd.tasks import facts
from rd.weights.export import save_hf
from tests.test_data_helpers import WORDS, random_text, tiny_tokenizer
from tests.tiny import CONFIGS


def make_model_dir(path: str, family: str = "gemma3", seed: int = 0, sharpness: float = 1.0) -> str:
  """A random tiny model whose vocabulary fits the tiny tokenizer, saved with that tokenizer.

  `sharpness` scales every weight: sharper attention and next-token distributions, so the
  context changes the predictions more and there is more to distill.
  """
  tokenizer = tiny_tokenizer()
  cfg = {**CONFIGS[family], "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
         "eos_token_id": tokenizer.eos_token_id}
  model = jax.tree.map(lambda w: w * sharpness, Decoder(from_hf_config(cfg), rngs=nnx.Rngs(seed)))
  save_hf(model, path)
  tokenizer.save_pretrained(path)
  return path


def make_task(path: str, n: int, seed: int = 0) -> str:
  """JSONL of random {context, query, response}: whatever the model does with the context is
  the behaviour to distill."""
  rng = random.Random(seed)
  examples = [Example(context=random_text(rng, 6, 12), query=random_text(rng, 2, 5),
                      response=" ".join(rng.choice(WORDS) for _ in range(4))) for _ in range(n)]
  write_jsonl(path, examples)
  return path


def make_facts(directory: str, prefix: str = "") -> dict[str, str]:
  """A small rd_facts dataset (3 documents, 2 facts each, one training and one held-out
  question per fact) as JSONL: {split: path} for train, test and documents."""
  splits = facts.make_splits(facts.FactsConfig(
      num_documents=3, min_facts=2, max_facts=2, train_questions_per_fact=1,
      heldout_questions_per_fact=1, filler_probability=0.0))
  paths = {name: os.path.join(directory, f"{prefix}{name}.jsonl") for name in splits}
  for name, examples in splits.items():
    write_jsonl(paths[name], examples)
  return paths
