"""The TAGI job: per-task adapters, the hypernetwork's two stages, and a comparison on seen and
unseen tasks. `run` is the whole experiment, top to bottom:

  1. tasks: the generated suite (`rd.data.task_suite`, seen/unseen split) or a JSONL file of
     task examples (`meta.task`, `meta.split`); per task, the first `tasks.n_train` examples
     train and the next `tasks.n_test` test. A task's instruction is its examples' `context`
     (the suite's: the instruction and `tasks.shots` worked examples);
  2. per-task teacher adapters, CE on each seen task's instances   -> <workdir>/adapters/<task>/
  3. stage 1, pretraining on text cut into (a, b, c)                -> <workdir>/stage1/
  4. stage 2, finetuning on the seen tasks (CE + λ1·KL + λ2·MSE)    -> <workdir>/stage2/
  5. greedy answers on every task's test inputs, exact match (normalized, `facts.exact_match`)
     and ROUGE-L, for: the base (input only), the base with the instruction in its prompt, the
     hypernetwork after stage 1 and after stage 2 (input only, LoRA = hypernet(instruction),
     one call per task), and the per-task adapters (seen tasks only);
  6. a system x split table, `<workdir>/results.json` and `<workdir>/predictions.jsonl`.

Running the same command again resumes: finished adapters are reloaded, stages resume from
their checkpoints.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from rd import config as config_lib
from rd import evaluate, hypernet, sharding, tagi
from rd import lora as lora_lib
from rd import rouge
from rd.data import sources
from rd.data.examples import Example, read_jsonl
from rd.data.templates import Template
from rd.distill import LossConfig
from rd.metrics import format_table
from rd.tokenizer import load_tokenizer
from rd.weights.load import load_model

SPLITS = ("seen", "unseen")
SYSTEMS = ("base", "base + instruction", "hypernet stage 1", "hypernet stage 2",
           "per-task LoRA")

# ----------------------------------------------------------------------------------------------
# Configuration


def _check(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise config_lib.ConfigError(f"config.{field}: {message}")


def validate(c: ml_collections.ConfigDict) -> None:
  """Checks every field the job reads before anything is loaded; one line per problem."""
  from rd.embedded import DEFAULT_MODEL  # pylint: disable=import-outside-toplevel
  _check(c.model.path == DEFAULT_MODEL or os.path.exists(c.model.path), "model.path",
         f"{c.model.path!r} does not exist; give an HF directory, a .gguf file or "
         f"{DEFAULT_MODEL!r}")
  _check(c.model.dtype in ("float32", "bfloat16"), "model.dtype", "use float32 or bfloat16")
  source = c.tasks.source
  _check(source == "suite" or (source.endswith(".jsonl") and os.path.exists(source)),
         "tasks.source", f"{source!r}: use 'suite' or an existing .jsonl of task examples")
  if source == "suite" and c.tasks.names:
    from rd.data import task_suite  # pylint: disable=import-outside-toplevel
    unknown = sorted(set(_names(c.tasks.names)) - set(task_suite.TASKS))
    _check(not unknown, "tasks.names", f"unknown tasks {unknown}")
  _check(c.tasks.n_train > 0 and c.tasks.n_test > 0, "tasks", "n_train and n_test must be > 0")
  _check(c.tasks.shots >= 0, "tasks.shots", "must be >= 0")
  for field in ("seen", "unseen"):
    _check(c.tasks[field] >= 0, f"tasks.{field}", "must be >= 0 (0 = every task of the split)")
  _check(c.stage1.steps >= 0 and c.stage2.steps >= 0, "stage1.steps",
         "stage steps must be >= 0")
  _check(c.stage1.steps + c.stage2.steps > 0, "stage2.steps", "both stages have 0 steps")
  for field in ("stage1.lr", "stage2.lr", "adapters.lr"):
    stage, name = field.split(".")
    _check(c[stage][name] > 0, field, "must be > 0")
  _check(c.adapters.steps > 0, "adapters.steps", "must be > 0")
  words = tuple(c.stage1.segment_words)
  _check(len(words) == 3 and min(words) > 0, "stage1.segment_words",
         f"give three positive word counts (a, b, c), got {words}")
  text = c.stage1.text
  if text.endswith(".txt"):
    _check(os.path.exists(text), "stage1.text", f"{text!r} does not exist")
  elif text:
    problem = sources.check(text)
    _check(not problem, "stage1.text", str(problem))
  _check(c.stage2.teacher in ("adapter", "context"), "stage2.teacher",
         "use 'adapter' (base + the task's LoRA) or 'context' (instruction in the prompt)")
  _check(min(c.stage2.ce_weight, c.stage2.kl_weight, c.stage2.adapter_weight) >= 0, "stage2",
         "loss weights must be >= 0")
  _check(c.stage2.ce_weight or c.stage2.kl_weight or c.stage2.adapter_weight, "stage2",
         "every loss weight is 0; set stage2.ce_weight, kl_weight or adapter_weight")
  _check(c.hypernet.hidden >= 1, "hypernet.hidden", "must be >= 1")
  _check(c.hypernet.instruction_len >= 2, "hypernet.instruction_len", "must be >= 2")
  _check(set(c.lora.targets) <= set(lora_lib.TARGETS), "lora.targets",
         f"unknown {sorted(set(c.lora.targets) - set(lora_lib.TARGETS))}; "
         f"choose from {lora_lib.TARGETS}")
  _check(c.lora.rank >= 1, "lora.rank", "must be >= 1")
  _check(c.data.global_batch > 0, "data.global_batch", "must be > 0")
  _check(c.data.response_len < min(c.data.teacher_len, c.data.student_len), "data.response_len",
         "must be shorter than data.teacher_len and data.student_len")
  _check(c.loss.temperature > 0, "loss.temperature", "must be > 0")
  _check(c.evaluation.max_new_tokens > 0, "evaluation.max_new_tokens", "must be > 0")


def _names(text: str) -> list[str]:
  return [n.strip() for n in text.split(",") if n.strip()]


def hypernet_config(c) -> hypernet.HypernetConfig:
  return hypernet.HypernetConfig(hidden=c.hypernet.hidden, rank=c.lora.rank, alpha=c.lora.alpha,
                                 targets=tuple(c.lora.targets))


# ----------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class Tasks:
  train: dict[str, list[Example]]  # task -> its training examples
  test: dict[str, list[Example]]
  split: dict[str, str]  # task -> "seen" | "unseen"

  def names(self, split: str) -> list[str]:
    return [t for t in self.train if self.split[t] == split]


def _pick(names: list[str], limit: int) -> list[str]:
  return names[:limit] if limit else names


def load_tasks(c) -> Tasks:
  """The suite's tasks (`tasks.names`, else the first `tasks.seen` / `tasks.unseen` of each
  split), or those of a JSONL file, each cut into train and test examples."""
  n_train, n_test = c.tasks.n_train, c.tasks.n_test
  train, test, split = {}, {}, {}
  if c.tasks.source == "suite":
    from rd.data import task_suite as ts  # pylint: disable=import-outside-toplevel
    chosen = _names(c.tasks.names) or [
        *_pick(ts.task_names("seen"), c.tasks.seen), *_pick(ts.task_names("unseen"),
                                                            c.tasks.unseen)]
    for name in chosen:
      kw = dict(k=c.tasks.shots, seed=c.tasks.seed)
      train[name] = ts.task_examples(name, n_train, **kw)
      test[name] = ts.task_examples(name, n_test, skip=n_train, **kw)
      split[name] = ts.TASKS[name].split
    return Tasks(train, test, split)
  by_task: dict[str, list[Example]] = collections.defaultdict(list)
  for i, e in enumerate(read_jsonl(c.tasks.source)):
    if e.meta.get("split") not in SPLITS or "task" not in e.meta:
      raise ValueError(f"{c.tasks.source}: example {i} needs meta.task and meta.split in "
                       f"{SPLITS}")
    by_task[e.meta["task"]].append(e)
  wanted = set(_names(c.tasks.names))
  for split_name, limit in (("seen", c.tasks.seen), ("unseen", c.tasks.unseen)):
    names = [t for t, ex in by_task.items() if ex[0].meta["split"] == split_name
             and (not wanted or t in wanted)]
    for name in _pick(names, limit):
      examples = by_task[name]
      if len(examples) < n_train + n_test:
        raise ValueError(f"task {name!r} has {len(examples)} examples; tasks.n_train + "
                         f"tasks.n_test = {n_train + n_test}")
      train[name], test[name] = examples[:n_train], examples[n_train:n_train + n_test]
      split[name] = split_name
  return Tasks(train, test, split)


def read_texts(source: str) -> list[str]:
  """Plain text: a .txt file's paragraphs (blank-line separated), or every example of a data
  source as its context, query and response joined."""
  if source.endswith(".txt"):
    with open(source, encoding="utf-8") as f:
      return [p.strip() for p in re.split(r"\n\s*\n", f.read()) if p.strip()]
  return ["\n".join(x for x in (e.context, e.query + e.response) if x.strip())
          for e in sources.load(source)]


def task_texts(tasks: Tasks, names: Sequence[str]) -> list[str]:
  """Text made of the training tasks themselves: each task's instruction followed by its
  training instances, written as the prompts write them."""
  return ["\n\n".join([tasks.train[t][0].context] + [f"Input: {e.query}\nOutput:{e.response}"
                                                      for e in tasks.train[t]])
          for t in names]


def segment_examples(texts: Sequence[str], words: tuple[int, int, int]) -> list[Example]:
  """Consecutive (a, b, c) word windows of every text as Example(context=a, query=b,
  response=c); the whitespace before c is moved onto c, so it is part of what is predicted."""
  n_a, n_b, n_c = words
  out = []
  for i, text in enumerate(texts):
    pieces = re.findall(r"\s*\S+", text)
    size = n_a + n_b + n_c
    for start in range(0, len(pieces) - size + 1, size):
      a = "".join(pieces[start:start + n_a]).strip()
      b = "".join(pieces[start + n_a:start + n_a + n_b]).strip()
      c = "".join(pieces[start + n_a + n_b:start + size]).rstrip()
      out.append(Example(context=a, query=b, response=c, meta={"text": i, "start": start}))
  return out


def _held_out(examples: list[Example], n: int) -> tuple[list[Example], list[Example]]:
  """(train, eval): evenly spaced examples held out, at most n and a fifth of them, at least
  one."""
  n_held = max(1, min(n, len(examples) // 5))
  held = set(range(0, len(examples), len(examples) // n_held)[:n_held])
  return ([e for i, e in enumerate(examples) if i not in held],
          [e for i, e in enumerate(examples) if i in held])


def _interleave(groups: Sequence[Sequence[Example]], limit: int) -> list[Example]:
  """Round-robin over the groups (tasks), so a capped eval set covers every task."""
  out = [e for row in zip(*groups) for e in row] if groups else []
  return out[:limit] if limit else out


# ----------------------------------------------------------------------------------------------
# Stages


def _loss(c, **weights) -> LossConfig:
  return dataclasses.replace(config_lib.loss_config(c), hidden_weight=0.0, hidden_layers=(),
                             **weights)


def stage1(c, tasks: Tasks, base, tokenizer) -> tagi.Stage:
  seen = tasks.names("seen")
  texts = read_texts(c.stage1.text) if c.stage1.text else task_texts(tasks, seen)
  examples = segment_examples(texts, tuple(c.stage1.segment_words))
  if len(examples) < 2:
    raise ValueError(f"stage 1: only {len(examples)} (a, b, c) segments of "
                     f"{tuple(c.stage1.segment_words)} words; give more text or shorter segments")
  train_ex, eval_ex = _held_out(examples, c.data.eval_examples)
  length = c.hypernet.instruction_len
  template = Template(teacher="{query}", student="{query}")  # b in, c out; no teacher
  return tagi.Stage(
      "stage1", train_ex, tagi.make_lookup(base, tokenizer, train_ex, length=length),
      eval_ex, tagi.make_lookup(base, tokenizer, eval_ex, length=length), template,
      _loss(c, kl_weight=0.0, ce_weight=1.0), tagi.TagiLoss(hypernet_config(c)),
      c.stage1.steps, c.stage1.lr)


def stage2(c, tasks: Tasks, base, tokenizer, task_names: Sequence[str]) -> tagi.Stage:
  seen = tasks.names("seen")
  train_ex = [e for t in seen for e in tasks.train[t]]
  eval_ex = _interleave([tasks.test[t] for t in seen], c.data.eval_examples)
  s = c.stage2
  teacher = (c.data.template_teacher if s.teacher == "context" else c.data.template_student)
  length = c.hypernet.instruction_len
  lookup = lambda ex: tagi.make_lookup(base, tokenizer, ex, length=length,  # noqa: E731
                                       task_names=task_names)
  return tagi.Stage(
      "stage2", train_ex, lookup(train_ex), eval_ex, lookup(eval_ex),
      Template(teacher=teacher, student=c.data.template_student),
      _loss(c, kl_weight=s.kl_weight, ce_weight=s.ce_weight),
      tagi.TagiLoss(hypernet_config(c), teacher=s.teacher, adapter_weight=s.adapter_weight,
                    adapter_sigmoid=s.adapter_sigmoid),
      s.steps, s.lr)


# ----------------------------------------------------------------------------------------------
# Evaluation


def _round_up(n: int, multiple: int = 8) -> int:
  return -(-n // multiple) * multiple


def score(base, tokenizer, examples_by_task: dict[str, list[Example]], lora_of, prompt_of, *,
          c, bucket: int) -> dict[str, dict[str, Any]]:
  """Greedy answers per task (`lora_of(task)` is its LoRA or None): {task: {exact_match,
  rouge_l, n, predictions}}; one compilation for all tasks (one prompt bucket)."""
  out = {}
  for task, examples in examples_by_task.items():
    result = evaluate.answer_accuracy(base, lora_of(task), tokenizer, examples, prompt_of,
                                      max_new_tokens=c.evaluation.max_new_tokens,
                                      batch_size=c.evaluation.batch_size, bucket=bucket)
    for p in result["predictions"]:
      p.update(task=task, rouge_l=rouge.rouge_l(p["prediction"], p["answer"]))
    preds = result["predictions"]
    out[task] = {"exact_match": result["exact_match"], "n": result["n"], "predictions": preds,
                 "rouge_l": sum(p["rouge_l"] for p in preds) / max(len(preds), 1)}
  return out


def _by_split(per_task: dict[str, dict[str, Any]], split_of: dict[str, str]) -> dict[str, Any]:
  """Example-weighted means of each split."""
  out = {}
  for split in SPLITS:
    preds = [p for t, r in per_task.items() if split_of[t] == split for p in r["predictions"]]
    if preds:
      out[split] = {"exact_match": float(np.mean([p["exact_match"] for p in preds])),
                    "rouge_l": float(np.mean([p["rouge_l"] for p in preds])), "n": len(preds)}
  return out


def evaluate_systems(c, tasks: Tasks, base, tokenizer, hypernets: dict[str, Any],
                     adapters: tuple[list[str], lora_lib.Lora] | None) -> dict[str, Any]:
  """{system: {"splits": {split: {exact_match, rouge_l, n}}, "tasks": per-task results}}."""
  template = Template(teacher=c.data.template_teacher, student=c.data.template_student)
  student = lambda e: template.student_prompt(e, tokenizer)  # noqa: E731
  teacher = lambda e: template.teacher_prompts(e, tokenizer)[0]  # noqa: E731
  test = tasks.test
  if c.evaluation.limit:
    test = {t: ex[:c.evaluation.limit] for t, ex in test.items()}
  bucket = {fn: _round_up(max(len(tokenizer.encode(fn(e))) for ex in test.values() for e in ex))
            for fn in (student, teacher)}
  embeddings = dict(zip(test, hypernet.embed_texts(
      base, tokenizer, [ex[0].context for ex in test.values()],
      length=c.hypernet.instruction_len)))
  cfg = hypernet_config(c)
  runs = {"base": (lambda t: None, student), "base + instruction": (lambda t: None, teacher)}
  for name, params in hypernets.items():
    runs[name] = (lambda t, p=params: hypernet.task_lora(p, embeddings[t], base.spec, cfg),
                  student)
  results = {}
  for name, (lora_of, prompt_of) in runs.items():
    per_task = score(base, tokenizer, test, lora_of, prompt_of, c=c, bucket=bucket[prompt_of])
    results[name] = {"splits": _by_split(per_task, tasks.split), "tasks": per_task}
  if adapters is not None:
    names, stack = adapters
    row = {t: i for i, t in enumerate(names)}
    seen = {t: ex for t, ex in test.items() if t in row}

    def lora_of(t):
      return lora_lib.Lora(jax.tree.map(lambda x: x[row[t]], stack.weights), scale=stack.scale)

    per_task = score(base, tokenizer, seen, lora_of, student, c=c, bucket=bucket[student])
    results["per-task LoRA"] = {"splits": _by_split(per_task, tasks.split), "tasks": per_task}
  return results


def results_table(results: dict[str, Any]) -> str:
  rows = []
  for system in [s for s in SYSTEMS if s in results]:
    cells = [system]
    for split in SPLITS:
      r = results[system]["splits"].get(split)
      cells += [f"{r['exact_match']:.3f}", f"{r['rouge_l']:.3f}", str(r["n"])] if r else ["-"] * 3
    rows.append(cells)
  return format_table(rows, ["system", "seen EM", "seen ROUGE-L", "n", "unseen EM",
                             "unseen ROUGE-L", "n"])


# ----------------------------------------------------------------------------------------------
# The job


def run(c, workdir: str) -> dict[str, Any]:
  """The whole experiment (module docstring); returns what `results.json` holds."""
  validate(c)
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh(**c.mesh)
  base = sharding.place_params(load_model(c.model.path, dtype=c.model.dtype), mesh)
  tokenizer = load_tokenizer(c.model.path)
  tasks = load_tasks(c)
  seen = tasks.names("seen")
  if not seen:
    raise ValueError("no seen tasks: stage 2 and the per-task adapters need some")
  logging.info("TAGI: %d seen tasks, %d unseen", len(seen), len(tasks.names("unseen")))

  need_adapters = c.stage2.steps and (c.stage2.teacher == "adapter" or c.stage2.adapter_weight)
  adapters = None
  if need_adapters or c.evaluation.per_task_adapters:
    adapters = tagi.train_task_adapters(c, {t: tasks.train[t] for t in seen},
                                        os.path.join(workdir, "adapters"), base=base,
                                        tokenizer=tokenizer)
  cfg = hypernet_config(c)
  params = hypernet.init(base.spec, cfg, jax.random.key(c.train.seed))
  hypernets, losses = {}, {}
  if c.stage1.steps:
    result = tagi.train_stage(c, stage1(c, tasks, base, tokenizer),
                              os.path.join(workdir, "stage1"), base=base, tokenizer=tokenizer,
                              mesh=mesh, params=params)
    if result.stopped_early:
      return {"stopped_early": "stage1"}
    params = hypernets["hypernet stage 1"] = result.params
    losses["stage1"] = {"before": result.before, "after": result.after}
  if c.stage2.steps:
    names = adapters[0] if adapters else seen
    result = tagi.train_stage(c, stage2(c, tasks, base, tokenizer, names),
                              os.path.join(workdir, "stage2"), base=base, tokenizer=tokenizer,
                              mesh=mesh, params=params,
                              task_adapters=adapters[1] if adapters else None)
    if result.stopped_early:
      return {"stopped_early": "stage2"}
    hypernets["hypernet stage 2"] = result.params
    losses["stage2"] = {"before": result.before, "after": result.after}

  results = evaluate_systems(c, tasks, base, tokenizer, hypernets, adapters)
  table = results_table(results)
  summary = {"systems": {s: r["splits"] for s, r in results.items()},
             "per_task": {s: {t: {k: v for k, v in r.items() if k != "predictions"}
                              for t, r in res["tasks"].items()} for s, res in results.items()},
             "losses": losses, "tasks": tasks.split,
             "hypernet_params": hypernet.num_params(params), "config": c.to_dict()}
  if jax.process_index() == 0:
    print("\n" + table)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(summary, f, indent=2, default=str)
    with open(os.path.join(workdir, "predictions.jsonl"), "w") as f:
      for system, res in results.items():
        for r in res["tasks"].values():
          for p in r["predictions"]:
            f.write(json.dumps({"system": system, **p}) + "\n")
  return summary

