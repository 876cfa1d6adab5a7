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
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from rd import config as config_lib
from rd import evaluate, train
from rd import lora as lora_lib
from rd.tasks import task_suite as ts
from rd.data.examples import Example, write_jsonl
from rd.generate import generate_text
from rd.metrics import format_table
from rd.tokenizer import load_tokenizer
from rd.weights.load import load_model

SYSTEMS = ("student before", "teacher", "student after", "SFT teacher answers", "SFT gold")
TRAININGS = ("distill", "sft_teacher", "sft_gold")

# ----------------------------------------------------------------------------------------------
# Configuration


def _check(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise config_lib.ConfigError(f"config.{field}: {message}")


def validate(c: ml_collections.ConfigDict) -> None:
  """The engine's checks plus this job's own fields; raises `config.ConfigError`. The job makes
  its own training files, so the engine checks run with them standing in for `data.train`."""
  stand_in = _copy(c)
  stand_in.data.train = stand_in.data.train or "tfds:rd_task_suite:train"
  config_lib.validate(stand_in)
  s = c.suite
  _check(len(s.tasks) > 0, "suite.tasks", "name at least one task of rd.tasks.task_suite.TASKS")
  unknown = [t for t in s.tasks if t not in ts.TASKS]
  _check(not unknown, "suite.tasks", f"unknown task(s) {unknown}; see rd.tasks.task_suite.TASKS")
  _check(len(set(s.tasks)) == len(s.tasks), "suite.tasks", "a task is listed twice")
  _check(s.k >= 0, "suite.k", "must be >= 0")
  _check(s.n_train >= 1 and s.n_test >= 1, "suite", "n_train and n_test must be >= 1")
  for name in s.tasks:
    try:
      ts.draw(name, s.n_train + s.n_test, k=s.k, seed=s.seed)
    except ValueError as e:
      raise config_lib.ConfigError(f"config.suite.n_train: {e}; lower suite.n_train or "
                                   f"suite.n_test") from None
  _check(c.distill.responses in ("teacher", "gold"), "distill.responses",
         "use 'teacher' (the teacher's greedy answers, no labels) or 'gold'")
  _check(c.sft.lr >= 0 and c.sft.steps >= 0, "sft", "lr and steps must be >= 0 (0 = as distill)")
  _check(c.evaluation.max_new_tokens >= 1, "evaluation.max_new_tokens", "must be >= 1")
  _check(c.evaluation.batch_size >= 1, "evaluation.batch_size", "must be >= 1")


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
  """Fails early if a prompt + response would be cut by `data.*_len`; returns the longest
  teacher and student prompts (token counts), for generation's buckets."""
  longest = {"teacher": 0, "student": 0, "response": 0}
  for e in examples:
    longest["teacher"] = max(longest["teacher"], len(tokenizer.encode(teacher_prompt(e))))
    longest["student"] = max(longest["student"], len(tokenizer.encode(student_prompt(e))))
    longest["response"] = max(longest["response"],
                              len(tokenizer.encode(e.response, add_special_tokens=False)))
  _check(longest["response"] <= c.data.response_len, "data.response_len",
         f"a response has {longest['response']} tokens; raise it")
  for side in ("teacher", "student"):
    need = longest[side] + longest["response"]
    _check(need <= c.data[f"{side}_len"], f"data.{side}_len",
           f"prompt + response need {need} tokens; raise it to at least {need}")
  return longest["teacher"], longest["student"]


# ----------------------------------------------------------------------------------------------
# The experiment


def _on_default_device(tree):
  """Trained LoRAs come back with the training mesh's sharding; plain arrays share one
  compilation of generation with the untrained LoRA."""
  return jax.tree.map(jnp.asarray, jax.device_get(tree))


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


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


def run_task(c, name: str, workdir: str, base, tokenizer, untrained, buckets) -> dict[str, Any]:
  """Steps 1-5 of the module docstring for one task; returns its results."""
  task_dir = os.path.join(workdir, name)
  os.makedirs(task_dir, exist_ok=True)
  train_set, test_set = task_splits(c, name)
  teacher_bucket, student_bucket = buckets
  seconds = {}

  start = time.perf_counter()
  completions = generate_text(base, None, tokenizer, [teacher_prompt(e) for e in train_set],
                              max_new_tokens=c.evaluation.max_new_tokens,
                              batch_size=c.evaluation.batch_size, bucket=teacher_bucket)
  answered = with_teacher_answers(train_set, completions)
  seconds["teacher answers"] = round(time.perf_counter() - start, 1)
  paths = {kind: os.path.join(task_dir, f"{kind}.jsonl")
           for kind in ("train_gold", "train_teacher", "test")}
  write_jsonl(paths["train_gold"], train_set)
  write_jsonl(paths["train_teacher"], answered)
  write_jsonl(paths["test"], test_set)
  check_lengths(c, tokenizer, answered)

  sources = {"distill": paths[f"train_{c.distill.responses}"],
             "sft_teacher": paths["train_teacher"], "sft_gold": paths["train_gold"]}
  trained, losses = {}, {}
  for kind in TRAININGS:
    start = time.perf_counter()
    result = train.train(training_config(c, kind, sources[kind], paths["test"]),
                         os.path.join(task_dir, kind), base=base, tokenizer=tokenizer)
    if result.stopped_early:
      raise RuntimeError("a training was preempted; run the job again to resume it")
    trained[kind] = _on_default_device(result.state.params)
    losses[kind] = {"before": result.before, "after": result.after}
    seconds[f"train {kind}"] = round(time.perf_counter() - start, 1)

  runs = {"student before": (untrained, student_prompt, student_bucket),
          "teacher": (None, teacher_prompt, teacher_bucket),
          "student after": (trained["distill"], student_prompt, student_bucket),
          "SFT teacher answers": (trained["sft_teacher"], student_prompt, student_bucket),
          "SFT gold": (trained["sft_gold"], student_prompt, student_bucket)}
  systems = {}
  start = time.perf_counter()
  for system in SYSTEMS:
    lora, template_fn, bucket = runs[system]
    systems[system] = exact_match(base, lora, tokenizer, test_set, template_fn, c, bucket)
  seconds["evaluation"] = round(time.perf_counter() - start, 1)
  teacher_train_em = sum(ts.is_correct(e.meta["answer_teacher"], e.meta["answer"])
                         for e in answered) / len(answered)
  return {"systems": systems, "teacher_train_exact_match": teacher_train_em,
          "train_losses": losses, "seconds": seconds, "family": ts.TASKS[name].family,
          "split": ts.TASKS[name].split, "instruction": ts.TASKS[name].instruction}


def results_table(results: dict[str, Any]) -> str:
  rows = [[name, *(f"{100 * r['systems'][s]['exact_match']:.1f}" for s in SYSTEMS)]
          for name, r in results["tasks"].items()]
  rows.append(["mean", *(f"{100 * results['mean'][s]:.1f}" for s in SYSTEMS)])
  return format_table(rows, ["task (exact match %)", *SYSTEMS])


def run(c: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The whole experiment (see the module docstring); returns what `results.json` holds."""
  validate(c)
  os.makedirs(workdir, exist_ok=True)
  start = time.perf_counter()
  base = load_model(c.model.path, dtype=c.model.dtype)
  tokenizer = load_tokenizer(c.model.path)
  # One generation bucket per side for every task: each side compiles once.
  every = [e for name in c.suite.tasks for split in task_splits(c, name) for e in split]
  teacher_len, student_len = check_lengths(c, tokenizer, every)
  buckets = (_round_up(teacher_len, 16), _round_up(student_len, 16))
  # The untrained student is the base plus a LoRA whose B is zero: numerically the base, and
  # it shares its compilations with the trained LoRAs.
  untrained = _on_default_device(
      lora_lib.init(base.spec, config_lib.lora_config(c), jax.random.key(c.train.seed)))

  tasks = {}
  for name in c.suite.tasks:
    logging.info("task %s", name)
    tasks[name] = run_task(c, name, workdir, base, tokenizer, untrained, buckets)

  predictions = [{"task": name, "system": system, **p} for name, r in tasks.items()
                 for system in SYSTEMS for p in r["systems"][system].pop("predictions")]
  mean = {s: sum(r["systems"][s]["exact_match"] for r in tasks.values()) / len(tasks)
          for s in SYSTEMS}
  results = {"tasks": tasks, "mean": mean, "n_train": c.suite.n_train, "n_test": c.suite.n_test,
             "k": c.suite.k, "responses": c.distill.responses,
             "seconds": round(time.perf_counter() - start, 1),
             "devices": [str(d) for d in jax.devices()], "config": c.to_dict()}
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, default=str)
  with open(os.path.join(workdir, "predictions.jsonl"), "w", encoding="utf-8") as f:
    for p in predictions:
      f.write(json.dumps(p, ensure_ascii=False) + "\n")
  if jax.process_index() == 0:
    print("\n" + results_table(results))
    print(f"{len(tasks)} task(s), {c.suite.n_train} training / {c.suite.n_test} test inputs "
          f"each, k = {c.suite.k}; distilled on {c.distill.responses} responses; "
          f"{results['seconds']:.0f} s")
  return results
