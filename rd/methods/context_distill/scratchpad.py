"""Scratch-pad internalization (Snell et al.): distill a model that adds with a scratch-pad into
the same model answering directly, and the baselines trained on the same data.

`run` is the experiment, top to bottom (every model is `rd/tasks/addition.py`'s tiny char-level
Llama; every training is `rd.train.train`, resumable in its own workdir):

  1. a random model and its tokenizer                                 -> <workdir>/init
  2. the scratch-pad teacher, trained from scratch with CE
     (`train.trainable=full`) on problems -> scratch-pad + answer     -> <workdir>/scratchpad
  3. the teacher works out its own scratch-pads for unlabeled problems; context distillation
     into a LoRA student that sees the problem only, KL on the teacher's answer tokens
     (no gold answer used)                                           -> <workdir>/distill
  4. baselines: direct-answer fine-tuning (a model trained from scratch with CE on the teacher's
     training problems with gold direct answers)                      -> <workdir>/direct
     and scratch-pad then direct (the teacher + a LoRA trained with CE on the distillation
     problems' gold direct answers)                                   -> <workdir>/scratchpad_then_direct
  5. greedy accuracy on `task.test_problems` unseen problems: the teacher with its scratch-pad,
     the student before (the teacher asked for a direct answer) and after distillation, both
     baselines; a table, `results.json`, `predictions.jsonl`.
"""

from __future__ import annotations

import os
import random
from typing import Any

import ml_collections
from absl import logging
from flax import nnx

from rd.config import check
from rd.job import barrier
from rd.tasks import addition
from rd.data.examples import write_jsonl
from rd.generate import generate_text
from rd.metrics import format_table
from rd.models import Decoder, from_hf_config
from rd.tokenizer import load_tokenizer
from rd.weights.export import save_hf


def validate(c: ml_collections.ConfigDict) -> None:
  t = c.task
  check(1 <= t.max_digits <= 8, "task.max_digits", "must be in 1..8 (the model's window is "
        "sized for 8-digit problems)")
  check(t.format in addition.FORMATS, "task.format", f"{t.format!r}; use one of "
        f"{', '.join(addition.FORMATS)}")
  for field in ("train_problems", "distill_problems", "test_problems"):
    check(t[field] > 0, f"task.{field}", "must be > 0")
  total = t.train_problems + t.distill_problems + t.test_problems
  space = sum(9 * 10 ** (d - 1) + (d == 1) for d in range(1, t.max_digits + 1)) ** 2
  check(total <= space // 2, "task", f"{total} distinct problems asked for, but only {space} "
        f"exist with up to {t.max_digits} digits; lower the problem counts")
  for stage in ("scratchpad", "direct"):
    check(c[stage].steps > 0, f"{stage}.steps", "must be > 0")
    check(c[stage].lr > 0, f"{stage}.lr", "must be > 0")
  check(c.train.steps > 0, "train.steps", "must be > 0")
  check(c.evaluation.batch_size > 0, "evaluation.batch_size", "must be > 0")


def make_problems(t) -> dict[str, list[tuple[int, int]]]:
  """Disjoint train / distill / test problem sets, fixed by `task.seed`."""
  rng = random.Random(t.seed)
  test = addition.problems(rng, t.test_problems, t.max_digits)
  train_set = addition.problems(rng, t.train_problems, t.max_digits, exclude=set(test))
  distill = addition.problems(rng, t.distill_problems, t.max_digits,
                              exclude=set(test) | set(train_set))
  return {"train": train_set, "distill": distill, "test": test}


def _stage(c, model_path: str, data: str, *, steps: int, lr: float, full: bool, kl: bool,
           direct: bool = True):
  """The engine config of one training: CE on the response (full model or LoRA), or KL.
  Direct answers are short: their student sequences and responses get shorter buckets."""
  s = ml_collections.ConfigDict(c.to_dict())
  del s.task, s.scratchpad, s.direct, s.evaluation, s.model_size
  s.model.path, s.data.train = model_path, data
  if direct:  # problem 18 chars + BOS + answer 9 + EOS
    s.data.update(student_len=32, response_len=16)
  s.train.update(steps=steps, trainable="full" if full else "lora",
                 checkpoint_every=max(steps // 4, 1))
  s.optim.update(lr=lr)
  s.loss.update(kl_weight=1.0 if kl else 0.0, ce_weight=0.0 if kl else 1.0)
  if full:
    s.optim.weight_decay = 0.01
  return s


def accuracy(model, lora, tokenizer, problems, *, scratch: bool, batch_size: int,
             fmt: addition.Format) -> dict:
  """Greedy answers to every problem; exact match of the (reversed-digit) answer."""
  answer_len = addition.MAX_DIGITS + 2  # digits, a final carry, EOS
  max_new = 5 * addition.MAX_DIGITS + 1 + answer_len if scratch else answer_len
  queries = [addition.query(a, b, fmt) for a, b in problems]
  completions = generate_text(model, lora, tokenizer, queries, max_new_tokens=max_new,
                              batch_size=batch_size)
  rows = [{"problem": q, "answer": addition.answer(a, b),
           "completion": out,
           "correct": addition.parse_answer(out, scratch=scratch) == addition.answer(a, b)}
          for (a, b), q, out in zip(problems, queries, completions)]
  return {"accuracy": sum(r["correct"] for r in rows) / len(rows), "n": len(rows),
          "predictions": rows}


def _init_model(c, directory: str) -> None:
  if os.path.exists(os.path.join(directory, "config.json")):
    return
  spec = from_hf_config(addition.model_config(**c.model_size))
  save_hf(Decoder(spec, rngs=nnx.Rngs(c.train.seed)), directory)
  addition.char_tokenizer().save_pretrained(directory)


def _teacher_pairs(job, teacher, tokenizer, problems, *, batch_size: int,
                   fmt: addition.Format) -> dict:
  """Writes <workdir>/distill.jsonl: the teacher's own scratch-pad and answer for each problem
  (the pairs it finished), once: a rerun reads it back. Returns its accuracy and the number
  of pairs."""

  def work():
    worked = accuracy(teacher, None, tokenizer, problems, scratch=True, batch_size=batch_size,
                      fmt=fmt)
    pairs = [addition.distill_example(a, b, row["completion"], fmt)
             for (a, b), row in zip(problems, worked["predictions"])]
    pairs = [p for p in pairs if p is not None]
    if not pairs:
      raise RuntimeError("the scratch-pad model finished none of the distillation problems "
                         "with an answer; train it longer (scratchpad.steps) or check its loss "
                         f"in {job.path('scratchpad', 'metrics.jsonl')}")
    if job.primary:
      write_jsonl(job.path("distill.jsonl"), pairs)
    logging.info("teacher answered %d/%d distillation problems, %.1f%% correctly", len(pairs),
                 len(problems), 100 * worked["accuracy"])
    return {"accuracy": worked["accuracy"], "pairs": len(pairs), "problems": len(problems)}

  return job.once(job.path("distill_pairs"), work)


def run(job) -> dict[str, Any]:
  c, path = job.config, job.path
  bs, fmt = c.evaluation.batch_size, addition.format_named(c.task.format, c.task.max_digits)

  # 1-2. Data, a random model, the scratch-pad teacher trained from scratch.
  problems = make_problems(c.task)
  if job.primary:
    _init_model(c, path("init"))
    write_jsonl(path("scratchpad.jsonl"), [addition.scratch_example(a, b, fmt)
                                           for a, b in problems["train"]])
    write_jsonl(path("direct.jsonl"), [addition.direct_example(a, b, fmt)
                                       for a, b in problems["train"]])
    write_jsonl(path("distill_gold.jsonl"), [addition.direct_example(a, b, fmt)
                                             for a, b in problems["distill"]])
  barrier("scratch-pad data")
  tokenizer = load_tokenizer(path("init"))
  with job.phase("train scratch-pad model"):
    teacher = job.train(_stage(c, path("init"), path("scratchpad.jsonl"), full=True, kl=False,
                               direct=False, **c.scratchpad), "scratchpad",
                        tokenizer=tokenizer).state.params
  teacher_dir = path("scratchpad", "model")

  # 3. The teacher's own scratch-pads for the distillation problems, then distillation.
  with job.phase("teacher scratch-pads"):
    worked = _teacher_pairs(job, teacher, tokenizer, problems["distill"], batch_size=bs,
                            fmt=fmt)
  with job.phase("distill"):
    student = job.train(_stage(c, teacher_dir, path("distill.jsonl"), full=False, kl=True,
                               steps=c.train.steps, lr=c.optim.lr), "distill", base=teacher,
                        tokenizer=tokenizer).state.params

  # 4. Baselines on the same problems, with gold direct answers.
  with job.phase("baselines"):
    direct = job.train(_stage(c, path("init"), path("direct.jsonl"), full=True, kl=False,
                              **c.direct), "direct", tokenizer=tokenizer).state.params
    then_direct = job.train(
        _stage(c, teacher_dir, path("distill_gold.jsonl"), full=False, kl=False,
               steps=c.train.steps, lr=c.optim.lr), "scratchpad_then_direct", base=teacher,
        tokenizer=tokenizer).state.params

  # 5. Unseen problems.
  test = problems["test"]
  runs = {"teacher (scratch-pad)": (teacher, None, True),
          "student before (direct)": (teacher, None, False),
          "student after distillation (direct)": (teacher, student, False),
          "baseline: direct-answer fine-tuning": (direct, None, False),
          "baseline: scratch-pad then direct": (teacher, then_direct, False)}
  systems, predictions = {}, []
  with job.phase("evaluate"):
    for name, (model, lora, scratch) in runs.items():
      r = accuracy(model, lora, tokenizer, test, scratch=scratch, batch_size=bs, fmt=fmt)
      predictions += [{"system": name, **p} for p in r.pop("predictions")]
      systems[name] = r
  results = {"systems": systems, "teacher_accuracy_on_distill_problems": worked["accuracy"],
             "n_distill_pairs": worked["pairs"],
             "n_problems": {k: len(v) for k, v in problems.items()}}
  table = format_table([[name, f"{100 * r['accuracy']:.2f}", str(r["n"])]
                        for name, r in systems.items()],
                       ["system (unseen 1-8 digit problems)", "accuracy %", "n"])
  return job.finish(results, tables=[table], predictions=predictions)
