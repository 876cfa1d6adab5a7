"""Evaluation of a (base, LoRA) pair: answer accuracy on question-answer examples, and drift.

* `answer_accuracy`: greedy answers to prompts built from `Example`s, cut at their first line
  (`scoring.answer_span`) and scored with `scoring.exact_match` / `scoring.contains_answer` against
  the gold answer (`meta["answer"]`, else the stripped `response`).
* `drift_kl`: how far a LoRA moved the model away from the base on text that has nothing to do
  with what it was trained on: the mean per-token KL(base || base + LoRA) of the next-token
  distributions at every position of a fixed set of generic sentences (`DRIFT_PROMPTS`). It is
  the engine's own KL term (`rd.distill.loss_terms`) with the base as the teacher, the LoRA as
  the student and every prompt position as a response row, so logits are made chunk by chunk
  and never exist as [B, T, V].

Both are pure functions of their arguments (nothing is trained or cached between calls besides
jit compilations).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from rd import distill
from rd.config import check
from rd import scoring
from rd.data.examples import Example
from rd.data.tokenize import pad_sequences, round_up
from rd.generate import generate_text, prompt_bucket
from rd.lora import Lora
from rd.models.decoder import Decoder

# Generic English text, unrelated to any fact of the bundled datasets: where a LoRA that only
# injected knowledge should leave the model's predictions alone.
DRIFT_PROMPTS: tuple[str, ...] = (
    "The weather today is mild, with a light breeze from the west.",
    "To make a cup of tea, boil the water and let the leaves steep for three minutes.",
    "The train to the city leaves every hour from the second platform.",
    "She opened the window and listened to the birds in the garden.",
    "Water freezes at zero degrees Celsius and boils at one hundred.",
    "The library is closed on Sundays but open late on Thursdays.",
    "He wrote a long letter to his grandmother and posted it the next morning.",
    "A healthy breakfast might include fruit, bread and a glass of milk.",
    "The meeting was moved to Friday because several people were travelling.",
    "Children were playing football in the park until it got dark.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Most plants need sunlight, water and good soil to grow well.",
    "The museum has a large collection of paintings from the last century.",
    "After the rain stopped, the streets were quiet and shiny.",
    "Please remember to turn off the lights when you leave the room.",
    "The river runs through the valley and into the sea.",
)


def gold_answer(example: Example) -> str:
  """The reference answer of a QA example: `meta["answer"]`, else the stripped response."""
  return str(example.meta.get("answer", example.response.strip()))


def check_max_new_tokens(c, tokenizer, examples: Sequence[Example]) -> int:
  """Greedy decoding must be able to write every gold answer whole: raises one `ConfigError`
  naming `evaluation.max_new_tokens` and the length this data needs, before any work."""
  need = max(len(tokenizer.encode(" " + gold_answer(e), add_special_tokens=False))
             for e in examples)
  check(need <= c.evaluation.max_new_tokens, "evaluation.max_new_tokens",
        f"{c.evaluation.max_new_tokens} is too short for this data: its longest answer is "
        f"{need} tokens; set evaluation.max_new_tokens={need} or more")
  return need


def answer_accuracy(base: Decoder, lora: Lora | None, tokenizer: Any,
                    examples: Sequence[Example], template_fn: Callable[[Example], str], *,
                    max_new_tokens: int = 8, batch_size: int = 8,
                    bucket: int | None = None) -> dict[str, Any]:
  """Greedy answers to `template_fn(example)` for every example, scored against the gold.

  `bucket` (generation's prompt-length rounding) defaults to the longest prompt rounded up to
  a multiple of 8, so every batch has one shape and the whole call compiles once.

  Returns {"exact_match": fraction, "contains": fraction, "n": count, "predictions": [{query,
  answer, completion, prediction, exact_match, contains}]}; the prediction is the completion's
  first non-empty line (`scoring.answer_span`). An empty `examples` gives n = 0 and accuracies 0.
  """
  if not examples:
    return {"exact_match": 0.0, "contains": 0.0, "n": 0, "predictions": []}
  prompts = [template_fn(e) for e in examples]
  if bucket is None:
    bucket = prompt_bucket(tokenizer, prompts)
  completions = generate_text(base, lora, tokenizer, prompts, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, bucket=bucket)
  predictions = []
  for example, completion in zip(examples, completions):
    answer, prediction = gold_answer(example), scoring.answer_span(completion)
    predictions.append({"query": example.query, "answer": answer, "completion": completion,
                        "prediction": prediction,
                        "exact_match": scoring.exact_match(prediction, answer),
                        "contains": scoring.contains_answer(prediction, answer)})
  n = len(predictions)
  return {"exact_match": sum(p["exact_match"] for p in predictions) / n,
          "contains": sum(p["contains"] for p in predictions) / n, "n": n,
          "predictions": predictions}


# ----------------------------------------------------------------------------------------------
# Drift


def drift_batch(tokenizer: Any, prompts: Sequence[str], *, batch_size: int,
                bucket: int = 8) -> dict[str, np.ndarray]:
  """A distillation batch in which teacher and student see the same prompt and every position
  is a response row (the row at position t predicts token t + 1, or what follows the prompt).

  Sequences are [BOS] + the prompt's ids, right-padded to a multiple of `bucket`; the batch is
  padded with empty rows up to `batch_size` (masked out).
  """
  bos = getattr(tokenizer, "bos_token_id", None)
  seqs = [np.asarray(([bos] if bos is not None else []) +
                     list(tokenizer.encode(p, add_special_tokens=False)), np.int32)
          for p in prompts]
  if any(len(s) == 0 for s in seqs):
    raise ValueError("drift prompts must be non-empty")
  pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
  width = round_up(max(len(s) for s in seqs), bucket)
  padded = pad_sequences(seqs, batch_size, width, pad)
  mask = padded["segment_ids"].copy()  # 1 on real tokens, 0 on padding
  rows = np.broadcast_to(np.arange(width, dtype=np.int32), (batch_size, width)) * mask
  batch = {f"{side}_{k}": v for side in ("teacher", "student") for k, v in padded.items()}
  batch.update(teacher_rows=rows, student_rows=rows, row_mask=mask,
               targets=np.zeros_like(mask))
  return batch


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _kl_sum(base: Decoder, lora: Lora | None, batch, chunk_size: int):
  cfg = distill.LossConfig(kl_weight=1.0, temperature=1.0, chunk_size=chunk_size)
  return distill.loss_terms(base, lora, None, batch, cfg)["kl"]


def drift_kl(base: Decoder, lora: Lora | None, tokenizer: Any,
             prompts: Sequence[str] = DRIFT_PROMPTS, *, batch_size: int = 16,
             chunk_size: int = 128) -> float:
  """Mean per-token KL(base || base + `lora`) over every position of `prompts` (nats).

  0 for `lora=None` or a LoRA whose B matrices are zero. Prompts go `batch_size` at a time
  (one compilation per padded length); logits exist `chunk_size` rows at a time.
  """
  total, count = 0.0, 0.0
  for start in range(0, len(prompts), batch_size):
    batch = drift_batch(tokenizer, prompts[start:start + batch_size], batch_size=batch_size)
    s, n = jax.device_get(_kl_sum(base, lora, batch, chunk_size))
    total, count = total + float(s), count + float(n)
  return total / max(count, 1.0)
