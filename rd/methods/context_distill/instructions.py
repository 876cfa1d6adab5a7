"""Instruction internalization (Snell et al., 2022, "Learning by Distilling Context"), one LoRA
per task of the generated suite (`rd.tasks.task_suite`), and its baselines.

The teacher is the base model with the task's instruction and k worked examples in its prompt;
the student is the same base with only the input (`Input: x\\nOutput:`) plus a LoRA. Distilling
the teacher's next-token distributions on the response rows (KL) moves the instruction into the
LoRA, and needs no labels: by default the responses are the teacher's own greedy answers, as in
the paper (`distill.responses="teacher"`; "gold" uses the generator's outputs instead).

`run` does, for every task in `suite.tasks`:

  1. data: `suite.n_train` training inputs and `suite.n_test` disjoint test inputs (the task's
     deterministic stream), the shots fixed per task; the teacher answers the training inputs
     (greedy);
  2. instruction distillation (KL)                      -> <workdir>/<task>/distill/
  3. SFT, cross-entropy on the teacher's answers        -> <workdir>/<task>/sft_teacher/
  4. SFT, cross-entropy on the gold answers             -> <workdir>/<task>/sft_gold/
  5. exact match (greedy, `task_suite.is_correct`) on the test inputs of: the student before
     (base, input only), the teacher (instruction + shots + input), the student after, and the
     two SFT students;

then prints a task x system table with a mean row, and writes `<workdir>/results.json` and
`<workdir>/predictions.jsonl`. Each training resumes from its checkpoints when run again.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
from absl import logging

from rd import config as config_lib
from rd.config import check
from rd import evaluate
from rd import lora as lora_lib
from rd.tasks import task_suite as ts
from rd.data.examples import Example, read_jsonl, write_jsonl
from rd.generate import generate_text, prompt_bucket
from rd.metrics import format_table

SYSTEMS = ("student before", "teacher", "student after", "SFT teacher answers", "SFT gold")
TRAININGS = ("distill", "sft_teacher", "sft_gold")

# ----------------------------------------------------------------------------------------------
# Configuration


def validate(c: ml_collections.ConfigDict) -> None:
  """The engine's checks plus this job's own fields; raises `config.ConfigError`. The job makes
  its own training files, so the engine checks run with them standing in for `data.train`."""
  stand_in = _copy(c)
  stand_in.data.train = stand_in.data.train or "tfds:rd_task_suite:train"
  config_lib.validate(stand_in)
  s = c.suite
  check(len(s.tasks) > 0, "suite.tasks", "name at least one task of rd.tasks.task_suite.TASKS")
  unknown = [t for t in s.tasks if t not in ts.TASKS]
  check(not unknown, "suite.tasks", f"unknown task(s) {unknown}; see rd.tasks.task_suite.TASKS")
  check(len(set(s.tasks)) == len(s.tasks), "suite.tasks", "a task is listed twice")
  check(s.k >= 0, "suite.k", "must be >= 0")
  check(s.n_train >= 1 and s.n_test >= 1, "suite", "n_train and n_test must be >= 1")
  for name in s.tasks:
    try:
      ts.draw(name, s.n_train + s.n_test, k=s.k, seed=s.seed)
    except ValueError as e:
      raise config_lib.ConfigError(f"config.suite.n_train: {e}; lower suite.n_train or "
                                   f"suite.n_test") from None
  check(c.distill.responses in ("teacher", "gold"), "distill.responses",
         "use 'teacher' (the teacher's greedy answers, no labels) or 'gold'")
  check(c.sft.lr >= 0 and c.sft.steps >= 0, "sft", "lr and steps must be >= 0 (0 = as distill)")
  check(c.evaluation.max_new_tokens >= 1, "evaluation.max_new_tokens", "must be >= 1")
  check(c.evaluation.batch_size >= 1, "evaluation.batch_size", "must be >= 1")


def _copy(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(c.to_dict())


def training_config(c, kind: str, train_path: str, eval_path: str) -> ml_collections.ConfigDict:
  """The engine config of one training: `distill` (KL to the teacher) or an SFT (`sft_*`: CE
  on the file's responses, no teacher)."""
  t = _copy(c)
  t.data.update(train=train_path, eval=eval_path)
  if kind != "distill":
    t.loss.update(kl_weight=0.0, ce_weight=1.0, hidden_weight=0.0)
    t.teacher.cache = False
    t.optim.lr = c.sft.lr or c.optim.lr
    t.train.steps = c.sft.steps or c.train.steps
  return t


# ----------------------------------------------------------------------------------------------
# Data


def task_splits(c, name: str) -> tuple[list[Example], list[Example]]:
  """(train, test) examples of one task: disjoint instances, the same shots."""
  s = c.suite
  train_set = ts.task_examples(name, s.n_train, k=s.k, seed=s.seed)
  test_set = ts.task_examples(name, s.n_test, k=s.k, seed=s.seed, skip=s.n_train)
  return train_set, test_set


def teacher_prompt(e: Example) -> str:
  return ts.TEACHER_TEMPLATE.format(context=e.context, query=e.query)


def student_prompt(e: Example) -> str:
  return ts.STUDENT_TEMPLATE.format(context=e.context, query=e.query)


def with_teacher_answers(examples: Sequence[Example], completions: Sequence[str]) -> list[Example]:
  """The examples with the teacher's greedy answer (first line) as the response; the gold
  answer stays in `meta["answer"]`, the teacher's is `meta["answer_teacher"]`."""
  out = []
  for e, completion in zip(examples, completions):
    answer = next((l.strip() for l in completion.split("\n") if l.strip()), "")
    out.append(dataclasses.replace(e, response=ts.RESPONSE_FORMAT.format(output=answer),
                                   meta={**e.meta, "answer_teacher": answer}))
  return out


def check_lengths(c, tokenizer, examples: Sequence[Example]) -> tuple[int, int]:
  """Fails early (`config.check_lengths`) if a prompt + response would not fit `data.*_len`;
  returns the generation buckets of the teacher's and the student's prompts."""
  config_lib.check_lengths(c, tokenizer, examples)
  return (prompt_bucket(tokenizer, [teacher_prompt(e) for e in examples], 16),
          prompt_bucket(tokenizer, [student_prompt(e) for e in examples], 16))


# ----------------------------------------------------------------------------------------------
# The experiment


def exact_match(base, lora, tokenizer, examples, template_fn, c, bucket: int) -> dict[str, Any]:
  """Greedy answers scored with `task_suite.is_correct` (case and punctuation count)."""
  r = evaluate.answer_accuracy(base, lora, tokenizer, examples, template_fn,
                               max_new_tokens=c.evaluation.max_new_tokens,
                               batch_size=c.evaluation.batch_size, bucket=bucket)
  predictions = [{**p, "exact_match": ts.is_correct(p["prediction"], p["answer"])}
                 for p in r["predictions"]]
  n = len(predictions)
  return {"exact_match": sum(p["exact_match"] for p in predictions) / max(n, 1), "n": n,
          "predictions": predictions}


def teacher_answers(job, name: str, train_set, base, tokenizer, bucket: int) -> dict[str, str]:
  """The task's training files (gold answers, the teacher's greedy answers, test inputs), made
  once in `<workdir>/<task>/`; returns their paths."""
  c, task_dir = job.config, job.path(name)
  paths = {kind: os.path.join(task_dir, f"{kind}.jsonl")
           for kind in ("train_gold", "train_teacher", "test")}

  def make():
    completions = generate_text(base, None, tokenizer, [teacher_prompt(e) for e in train_set],
                                max_new_tokens=c.evaluation.max_new_tokens,
                                batch_size=c.evaluation.batch_size, bucket=bucket)
    answered = with_teacher_answers(train_set, completions)
    if job.primary:
      write_jsonl(paths["train_gold"], train_set)
      write_jsonl(paths["train_teacher"], answered)
      write_jsonl(paths["test"], task_splits(c, name)[1])
    return {"teacher_train_exact_match": sum(
        ts.is_correct(e.meta["answer_teacher"], e.meta["answer"]) for e in answered)
            / len(answered)}

  with job.phase("teacher answers"):
    summary = job.once(os.path.join(task_dir, "answers"), make)
  return paths, summary


def run_task(job, name: str, base, tokenizer, untrained, buckets) -> dict[str, Any]:
  """Steps 1-5 of the module docstring for one task; returns its results."""
  c = job.config
  train_set, test_set = task_splits(c, name)
  teacher_bucket, student_bucket = buckets
  paths, summary = teacher_answers(job, name, train_set, base, tokenizer, teacher_bucket)
  check_lengths(c, tokenizer, read_jsonl(paths["train_teacher"]))

  sources = {"distill": paths[f"train_{c.distill.responses}"],
             "sft_teacher": paths["train_teacher"], "sft_gold": paths["train_gold"]}
  trained, losses = {}, {}
  for kind in TRAININGS:
    with job.phase(f"train {kind}"):
      trained[kind], losses[kind] = job.trained_lora(
          training_config(c, kind, sources[kind], paths["test"]), os.path.join(name, kind),
          base=base, tokenizer=tokenizer)

  runs = {"student before": (untrained, student_prompt, student_bucket),
          "teacher": (None, teacher_prompt, teacher_bucket),
          "student after": (trained["distill"], student_prompt, student_bucket),
          "SFT teacher answers": (trained["sft_teacher"], student_prompt, student_bucket),
          "SFT gold": (trained["sft_gold"], student_prompt, student_bucket)}
  systems = {}
  with job.phase("evaluation"):
    for system in SYSTEMS:
      lora, template_fn, bucket = runs[system]
      systems[system] = exact_match(base, lora, tokenizer, test_set, template_fn, c, bucket)
  return {"systems": systems, **summary, "train_losses": losses,
          "family": ts.TASKS[name].family, "split": ts.TASKS[name].split,
          "instruction": ts.TASKS[name].instruction}


def results_table(results: dict[str, Any]) -> str:
  rows = [[name, *(f"{100 * r['systems'][s]['exact_match']:.1f}" for s in SYSTEMS)]
          for name, r in results["tasks"].items()]
  rows.append(["mean", *(f"{100 * results['mean'][s]:.1f}" for s in SYSTEMS)])
  return format_table(rows, ["task (exact match %)", *SYSTEMS])


def run(job) -> dict[str, Any]:
  """The whole experiment (see the module docstring); returns what `results.json` holds."""
  c = job.config
  base, tokenizer = job.load()
  # One generation bucket per side for every task: each side compiles once.
  every = [e for name in c.suite.tasks for split in task_splits(c, name) for e in split]
  buckets = check_lengths(c, tokenizer, every)
  # The untrained student is the base plus a LoRA whose B is zero: numerically the base, and
  # it shares its compilations with the trained LoRAs.
  untrained = job.replicate(
      lora_lib.init(base.spec, config_lib.lora_config(c), jax.random.key(c.train.seed)))

  tasks = {}
  for name in c.suite.tasks:
    logging.info("task %s", name)
    tasks[name] = run_task(job, name, base, tokenizer, untrained, buckets)

  predictions = [{"task": name, "system": system, **p} for name, r in tasks.items()
                 for system in SYSTEMS for p in r["systems"][system].pop("predictions")]
  mean = {s: sum(r["systems"][s]["exact_match"] for r in tasks.values()) / len(tasks)
          for s in SYSTEMS}
  results = {"tasks": tasks, "mean": mean, "n_train": c.suite.n_train, "n_test": c.suite.n_test,
             "k": c.suite.k, "responses": c.distill.responses}
  summary = (f"{len(tasks)} task(s), {c.suite.n_train} training / {c.suite.n_test} test inputs "
             f"each, k = {c.suite.k}; distilled on {c.distill.responses} responses")
  return job.finish(results, tables=[results_table(results), summary], predictions=predictions)
