"""The TAGI job: per-task adapters, the hypernetwork's two stages, and a comparison on seen and
unseen tasks. `run` is the whole experiment, top to bottom:

  1. tasks: the generated suite (`rd.tasks.task_suite`, seen/unseen split) or a JSONL file of
     task examples (`meta.task`, `meta.split`); per task, the first `tasks.n_train` examples
     train and the next `tasks.n_test` test. A task's instruction is its examples' `context`
     (the suite's: the instruction and `tasks.shots` worked examples);
  2. per-task teacher adapters, CE on each seen task's instances   -> <workdir>/adapters/<task>/
  3. stage 1, pretraining on text cut into (a, b, c)                -> <workdir>/stage1/
  4. stage 2, finetuning on the seen tasks (CE + λ1·KL + λ2·MSE)    -> <workdir>/stage2/
  5. greedy answers on every task's test inputs, exact match (normalized, `scoring.exact_match`)
     and ROUGE-L, for: the base (input only), the base with the instruction in its prompt, the
     hypernetwork after stage 1 and after stage 2 (input only, LoRA = hypernet(instruction),
     one call per task), and the per-task adapters (seen tasks only);
  6. a system x split table, the ablations' table, each unseen task's nearest seen task by
     instruction embedding (what the hypernetwork cannot tell apart), `<workdir>/results.json`
     and `<workdir>/predictions.jsonl`.

Running the same command again resumes: finished adapters are reloaded, stages resume from
their checkpoints.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from rd import scoring
from rd import config as config_lib
from rd import evaluate
from rd.generate import prompt_bucket
from rd.config import check
from rd.job import Preempted
from rd.methods.tagi import hypernet
from rd.methods.tagi import stages as tagi
from rd import lora as lora_lib
from rd.data import sources
from rd.data.examples import Example, read_jsonl
from rd.data.templates import Template
from rd.distill import LossConfig
from rd.metrics import format_table

SPLITS = ("seen", "unseen")
# Stage-2 variants that each drop one part of the method (config.ablations), by system name.
ABLATIONS = {"no_kl": "hypernet stage 2, no KL",
             "no_alignment": "hypernet stage 2, no alignment",
             "no_stage1": "hypernet stage 2, no stage 1"}
SYSTEMS = ("base", "base + instruction", "hypernet stage 1", "hypernet stage 2",
           *ABLATIONS.values(), "per-task LoRA")

# ----------------------------------------------------------------------------------------------
# Configuration


def validate(c: ml_collections.ConfigDict) -> None:
  """Checks every field the job reads before anything is loaded; one line per problem."""
  from rd.embedded import DEFAULT_MODEL  # pylint: disable=import-outside-toplevel
  check(c.model.path == DEFAULT_MODEL or os.path.exists(c.model.path), "model.path",
         f"{c.model.path!r} does not exist; give an HF directory, a .gguf file or "
         f"{DEFAULT_MODEL!r}")
  check(c.model.dtype in ("float32", "bfloat16"), "model.dtype", "use float32 or bfloat16")
  source = c.tasks.source
  check(source == "suite" or (source.endswith(".jsonl") and os.path.exists(source)),
         "tasks.source", f"{source!r}: use 'suite' or an existing .jsonl of task examples")
  if source == "suite" and c.tasks.names:
    from rd.tasks import task_suite  # pylint: disable=import-outside-toplevel
    unknown = sorted(set(_names(c.tasks.names)) - set(task_suite.TASKS))
    check(not unknown, "tasks.names", f"unknown tasks {unknown}")
  check(c.tasks.n_train > 0 and c.tasks.n_test > 0, "tasks", "n_train and n_test must be > 0")
  check(c.tasks.shots >= 0, "tasks.shots", "must be >= 0")
  for field in ("seen", "unseen"):
    check(c.tasks[field] >= 0, f"tasks.{field}", "must be >= 0 (0 = every task of the split)")
  check(c.stage1.steps >= 0 and c.stage2.steps >= 0, "stage1.steps",
         "stage steps must be >= 0")
  check(c.stage1.steps + c.stage2.steps > 0, "stage2.steps", "both stages have 0 steps")
  for field in ("stage1.lr", "stage2.lr", "adapters.lr"):
    stage, name = field.split(".")
    check(c[stage][name] > 0, field, "must be > 0")
  check(c.adapters.steps > 0, "adapters.steps", "must be > 0")
  words = tuple(c.stage1.segment_words)
  check(len(words) == 3 and min(words) > 0, "stage1.segment_words",
         f"give three positive word counts (a, b, c), got {words}")
  text = c.stage1.text
  if text.endswith(".txt"):
    check(os.path.exists(text), "stage1.text", f"{text!r} does not exist")
  elif text:
    problem = sources.check(text)
    check(not problem, "stage1.text", str(problem))
  check(c.stage2.teacher in ("adapter", "context"), "stage2.teacher",
         "use 'adapter' (base + the task's LoRA) or 'context' (instruction in the prompt)")
  check(min(c.stage2.ce_weight, c.stage2.kl_weight, c.stage2.adapter_weight) >= 0, "stage2",
         "loss weights must be >= 0")
  check(c.stage2.ce_weight or c.stage2.kl_weight or c.stage2.adapter_weight, "stage2",
         "every loss weight is 0; set stage2.ce_weight, kl_weight or adapter_weight")
  check(c.hypernet.hidden >= 1, "hypernet.hidden", "must be >= 1")
  check(c.hypernet.instruction_len >= 2, "hypernet.instruction_len", "must be >= 2")
  check(set(c.lora.targets) <= set(lora_lib.TARGETS), "lora.targets",
         f"unknown {sorted(set(c.lora.targets) - set(lora_lib.TARGETS))}; "
         f"choose from {lora_lib.TARGETS}")
  check(c.lora.rank >= 1, "lora.rank", "must be >= 1")
  check(c.data.global_batch > 0, "data.global_batch", "must be > 0")
  check(c.data.response_len < min(c.data.teacher_len, c.data.student_len), "data.response_len",
         "must be shorter than data.teacher_len and data.student_len")
  check(c.loss.temperature > 0, "loss.temperature", "must be > 0")
  check(c.evaluation.max_new_tokens > 0, "evaluation.max_new_tokens", "must be > 0")
  check(c.evaluation.limit >= 0 and c.evaluation.seen_limit >= 0, "evaluation.limit",
         "limits must be >= 0 (0 = every test example)")
  _check_ablations(c)


def _check_ablations(c) -> None:
  names = ablations(c)
  unknown = sorted(set(names) - set(ABLATIONS))
  check(not unknown, "ablations", f"unknown {unknown}; choose from {sorted(ABLATIONS)}")
  if not names:
    return
  s = c.stage2
  check(s.steps > 0, "ablations", "every ablation is a stage-2 variant; set stage2.steps > 0")
  check("no_stage1" not in names or c.stage1.steps > 0, "ablations",
         "no_stage1 needs stage1.steps > 0 (without stage 1 it is stage 2 itself)")
  check("no_kl" not in names or (s.kl_weight and (s.ce_weight or s.adapter_weight)),
         "ablations", "no_kl needs stage2.kl_weight > 0 and another loss weight > 0")
  check("no_alignment" not in names or (s.adapter_weight and (s.ce_weight or s.kl_weight)),
         "ablations", "no_alignment needs stage2.adapter_weight > 0 and another weight > 0")


def ablations(c) -> list[str]:
  return _names(c.ablations)


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
    from rd.tasks import task_suite as ts  # pylint: disable=import-outside-toplevel
    chosen = _names(c.tasks.names) or [
        *_pick(ts.task_names("seen"), c.tasks.seen), *_pick(ts.task_names("unseen"),
                                                            c.tasks.unseen)]
    for name in chosen:
      split[name] = ts.TASKS[name].split
      n = n_train if split[name] == "seen" else 0  # nothing trains on an unseen task
      kw = dict(k=c.tasks.shots, seed=c.tasks.seed)
      try:
        train[name] = ts.task_examples(name, n, **kw)
        test[name] = ts.task_examples(name, n_test, skip=n, **kw)
      except ValueError as e:
        raise config_lib.ConfigError(
            f"config.tasks.n_train: {e} (tasks.shots + n_train + n_test); lower n_train or "
            f"n_test") from None
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
      n = n_train if split_name == "seen" else 0  # nothing trains on an unseen task
      check(len(examples) >= n + n_test, "tasks.n_train",
            f"task {name!r} has {len(examples)} examples; it needs {n + n_test} (tasks.n_train "
            "for a seen task + tasks.n_test): lower them or give the task more examples")
      train[name], test[name] = examples[:n], examples[n:n + n_test]
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


def stage2(c, tasks: Tasks, base, tokenizer, task_names: Sequence[str], *,
           ablation: str = "") -> tagi.Stage:
  """Stage 2, or its variant without KL (`ablation="no_kl"`) or without the adapter term
  ("no_alignment"); "no_stage1" changes only where it starts (`run`)."""
  seen = tasks.names("seen")
  train_ex = [e for t in seen for e in tasks.train[t]]
  eval_ex = _interleave([tasks.test[t] for t in seen], c.data.eval_examples)
  s = c.stage2
  kl_weight = 0.0 if ablation == "no_kl" else s.kl_weight
  adapter_weight = 0.0 if ablation == "no_alignment" else s.adapter_weight
  teacher = (c.data.template_teacher if s.teacher == "context" else c.data.template_student)
  length = c.hypernet.instruction_len
  lookup = lambda ex: tagi.make_lookup(base, tokenizer, ex, length=length,  # noqa: E731
                                       task_names=task_names)
  return tagi.Stage(
      f"stage2_{ablation}" if ablation else "stage2", train_ex, lookup(train_ex), eval_ex, lookup(eval_ex),
      Template(teacher=teacher, student=c.data.template_student),
      _loss(c, kl_weight=kl_weight, ce_weight=s.ce_weight),
      tagi.TagiLoss(hypernet_config(c), teacher=s.teacher, adapter_weight=adapter_weight,
                    adapter_sigmoid=s.adapter_sigmoid),
      s.steps, s.lr)


# ----------------------------------------------------------------------------------------------
# Evaluation


@dataclasses.dataclass(frozen=True)
class System:
  """How one system answers a task: its LoRA (or None), its prompt, and what that costs beyond
  the base model's decoding: FLOPs per fed token (an unmerged LoRA) and once per task (the
  hypernetwork reading the instruction)."""

  lora_of: Any  # task -> Lora | None
  prompt_of: Any  # Example -> str
  lora_flops_per_token: float = 0.0
  task_flops: Any = lambda task: 0.0  # noqa: E731


def score(base, tokenizer, examples_by_task: dict[str, list[Example]], system: System, *,
          c, bucket: int) -> dict[str, dict[str, Any]]:
  """Greedy answers per task: {task: {exact_match, rouge_l, n, predictions}}; one compilation
  for all tasks (one prompt bucket). Each prediction carries its inference FLOPs, from its
  token counts and the model's FLOP formula (`ModelSpec.generation_flops`)."""
  out, max_new = {}, c.evaluation.max_new_tokens
  for task, examples in examples_by_task.items():
    result = evaluate.answer_accuracy(base, system.lora_of(task), tokenizer, examples,
                                      system.prompt_of, max_new_tokens=max_new,
                                      batch_size=c.evaluation.batch_size, bucket=bucket)
    preds = result["predictions"]
    for e, p in zip(examples, preds):
      prompt = len(tokenizer.encode(system.prompt_of(e)))
      # The completion's tokens and the EOS that ended it, or the whole budget.
      new = min(max_new, len(tokenizer.encode(p["completion"], add_special_tokens=False)) + 1)
      flops = (base.spec.generation_flops(prompt, new)
               + (prompt + new - 1) * system.lora_flops_per_token
               + system.task_flops(task) / len(examples))
      p.update(task=task, rouge_l=scoring.rouge_l(p["prediction"], p["answer"]),
               prompt_tokens=prompt, new_tokens=new, gflops=flops / 1e9)
    out[task] = {"exact_match": result["exact_match"], "n": result["n"], "predictions": preds,
                 "rouge_l": float(np.mean([p["rouge_l"] for p in preds])) if preds else 0.0}
  return out


def _by_split(per_task: dict[str, dict[str, Any]], split_of: dict[str, str]) -> dict[str, Any]:
  """Example-weighted means of each split."""
  out = {}
  for split in SPLITS:
    preds = [p for t, r in per_task.items() if split_of[t] == split for p in r["predictions"]]
    if preds:
      out[split] = {k: float(np.mean([p[k] for p in preds]))
                    for k in ("exact_match", "rouge_l", "gflops")}
      out[split]["n"] = len(preds)
  return out


def test_examples(c, tasks: Tasks) -> dict[str, list[Example]]:
  """Each task's test examples, capped by `evaluation.limit` (every task) and
  `evaluation.seen_limit` (seen tasks: the claims are about unseen ones)."""
  out = {}
  for task, examples in tasks.test.items():
    limits = [c.evaluation.limit] + [c.evaluation.seen_limit] * (tasks.split[task] == "seen")
    out[task] = examples[:min([n for n in limits if n] or [len(examples)])]
  return out


def instruction_embeddings(c, test: dict[str, list[Example]], base,
                           tokenizer) -> dict[str, np.ndarray]:
  """Each task's instruction embedding [d]: the hypernetwork's input."""
  instructions = [ex[0].context for ex in test.values()]
  return dict(zip(test, hypernet.embed_texts(base, tokenizer, instructions,
                                             length=c.hypernet.instruction_len)))


def nearest_seen(embeddings: dict[str, np.ndarray],
                 split: dict[str, str]) -> dict[str, dict[str, Any]]:
  """{unseen task: {"task": the seen task whose instruction embedding is most similar,
  "cosine": their cosine}}. Near 1, the hypernetwork's input barely differs from that seen
  task's, and it tends to write that task's adapter."""
  unit = {t: e / max(float(np.linalg.norm(e)), 1e-12) for t, e in embeddings.items()}
  seen = [t for t in unit if split[t] == "seen"]
  if not seen:
    return {}
  out = {}
  for task in [t for t in unit if split[t] == "unseen"]:
    cosine = {s: float(unit[task] @ unit[s]) for s in seen}
    best = max(cosine, key=cosine.get)
    out[task] = {"task": best, "cosine": cosine[best]}
  return out


def evaluate_systems(c, tasks: Tasks, test: dict[str, list[Example]],
                     embeddings: dict[str, np.ndarray], base, tokenizer,
                     hypernets: dict[str, Any],
                     adapters: tuple[list[str], lora_lib.Lora] | None) -> dict[str, Any]:
  """{system: {"splits": {split: {exact_match, rouge_l, gflops, n}}, "tasks": per-task
  results}} on `test` (`test_examples`), the hypernetworks reading `embeddings`
  (`instruction_embeddings`)."""
  template = Template(teacher=c.data.template_teacher, student=c.data.template_student)
  student = lambda e: template.student_prompt(e, tokenizer)  # noqa: E731
  teacher = lambda e: template.teacher_prompts(e, tokenizer)[0]  # noqa: E731
  bucket = {fn: prompt_bucket(tokenizer, [fn(e) for ex in test.values() for e in ex])
            for fn in (student, teacher)}
  length, cfg = c.hypernet.instruction_len, hypernet_config(c)
  instructions = [ex[0].context for ex in test.values()]
  read = hypernet.instruction_tokens(tokenizer, instructions, length)["segment_ids"].sum(1)
  hypernet_flops = {t: hypernet.task_flops(base.spec, cfg, int(n)) for t, n in zip(test, read)}
  lora_flops = lora_lib.flops_per_token(base.spec, cfg.lora_config())
  systems = {"base": System(lambda t: None, student),
             "base + instruction": System(lambda t: None, teacher)}
  for name, params in hypernets.items():
    systems[name] = System(lambda t, p=params: hypernet.task_lora(p, embeddings[t], base.spec, cfg),
                           student, lora_flops, hypernet_flops.get)
  if adapters is not None:
    names, stack = adapters
    row = {t: i for i, t in enumerate(names)}
    systems["per-task LoRA"] = System(
        lambda t: lora_lib.Lora(jax.tree.map(lambda x: x[row[t]], stack.weights),
                                scale=stack.scale), student, lora_flops)
  results = {}
  for name, system in systems.items():
    examples = {t: ex for t, ex in test.items() if name != "per-task LoRA" or t in row}
    per_task = score(base, tokenizer, examples, system, c=c, bucket=bucket[system.prompt_of])
    results[name] = {"splits": _by_split(per_task, tasks.split), "tasks": per_task}
  return results


def _unseen(results, system: str) -> dict[str, float] | None:
  return results.get(system, {}).get("splits", {}).get("unseen")


def results_table(results: dict[str, Any]) -> str:
  """Every system on both splits, with its unseen scores and FLOPs relative to the base with
  the instruction in its prompt (the bar: >= 90% of its score at >= 2x fewer FLOPs)."""
  ref = _unseen(results, "base + instruction")
  rows = []
  for system in [s for s in SYSTEMS if s in results]:
    cells = [system]
    for split in SPLITS:
      r = results[system]["splits"].get(split)
      cells += [f"{r['exact_match']:.3f}", f"{r['rouge_l']:.3f}", str(r["n"])] if r else ["-"] * 3
    r = _unseen(results, system)
    cells.append(f"{r['gflops']:.3g}" if r else "-")
    for key in ("exact_match", "rouge_l"):
      cells.append(f"{100 * r[key] / ref[key]:.0f}%" if r and ref and ref[key] else "-")
    cells.append(f"{ref['gflops'] / r['gflops']:.2f}x" if r and ref else "-")
    rows.append(cells)
  return format_table(rows, ["system", "seen EM", "seen ROUGE-L", "n", "unseen EM",
                             "unseen ROUGE-L", "n", "unseen GFLOPs/ex", "EM / base+instr",
                             "ROUGE-L / base+instr", "FLOPs: base+instr / this"])


def ablation_table(results: dict[str, Any]) -> str:
  """Stage 2 against each variant that drops one part: unseen and seen scores and the change
  in unseen EM."""
  full = _unseen(results, "hypernet stage 2")
  rows = []
  for system in ["hypernet stage 2", *ABLATIONS.values()]:
    if system not in results:
      continue
    splits = results[system]["splits"]
    u, s = splits.get("unseen"), splits.get("seen")
    rows.append([system] + ([f"{u['exact_match']:.3f}", f"{u['rouge_l']:.3f}",
                             f"{u['exact_match'] - full['exact_match']:+.3f}"] if u and full
                            else ["-"] * 3)
                + ([f"{s['exact_match']:.3f}", f"{s['rouge_l']:.3f}"] if s else ["-"] * 2))
  return format_table(rows, ["stage 2", "unseen EM", "unseen ROUGE-L", "Δ unseen EM", "seen EM",
                             "seen ROUGE-L"])


def nearest_table(nearest: dict[str, dict[str, Any]], results: dict[str, Any]) -> str:
  """Per unseen task: its nearest seen task, their cosine, and the EM of the base with the
  instruction and of each hypernetwork after stage 2 on it."""
  systems = [s for s in ("base + instruction", "hypernet stage 2", *ABLATIONS.values())
             if s in results]
  rows = []
  for task, near in nearest.items():
    ems = [results[s]["tasks"].get(task, {}).get("exact_match") for s in systems]
    rows.append([task, near["task"], f"{near['cosine']:.3f}",
                 *["-" if em is None else f"{em:.2f}" for em in ems]])
  return format_table(rows, ["unseen task", "nearest seen task", "cosine",
                             *[f"EM: {s}" for s in systems]])


# ----------------------------------------------------------------------------------------------
# The job


def _stage(job, stage, params, base, tokenizer, adapters=None):
  """One hypernetwork stage in `<workdir>/<stage.name>`; `Preempted` when a SIGTERM stopped it."""
  with job.phase(f"train {stage.name}"):
    result = tagi.train_stage(job.config, stage, job.path(stage.name), base=base,
                              tokenizer=tokenizer, mesh=job.mesh, params=params,
                              task_adapters=adapters, guard=job.guard)
  if result.stopped_early:
    raise Preempted(stage.name)
  return result


def run(job) -> dict[str, Any]:
  """The whole experiment (module docstring); returns what `results.json` holds."""
  c = job.config
  base, tokenizer = job.load()
  tasks = load_tasks(c)
  seen = tasks.names("seen")
  if not seen:
    raise ValueError("no seen tasks: stage 2 and the per-task adapters need some")
  logging.info("TAGI: %d seen tasks, %d unseen", len(seen), len(tasks.names("unseen")))

  need_adapters = c.stage2.steps and (c.stage2.teacher == "adapter" or c.stage2.adapter_weight)
  adapters = None
  if need_adapters or c.evaluation.per_task_adapters:
    with job.phase("per-task adapters"):
      adapters = tagi.train_task_adapters(job, {t: tasks.train[t] for t in seen}, "adapters",
                                          base=base, tokenizer=tokenizer)
  cfg = hypernet_config(c)
  params = init_params = hypernet.init(base.spec, cfg, jax.random.key(c.train.seed))
  hypernets, losses = {}, {}
  if c.stage1.steps:
    result = _stage(job, stage1(c, tasks, base, tokenizer), params, base, tokenizer)
    params = hypernets["hypernet stage 1"] = result.params
    losses["stage1"] = {"before": result.before, "after": result.after}
  if c.stage2.steps:
    names = adapters[0] if adapters else seen
    starts = {"": params, "no_kl": params, "no_alignment": params, "no_stage1": init_params}
    for ablation in ["", *ablations(c)]:
      stage = stage2(c, tasks, base, tokenizer, names, ablation=ablation)
      result = _stage(job, stage, starts[ablation], base, tokenizer,
                      adapters[1] if adapters else None)
      hypernets[ABLATIONS.get(ablation, "hypernet stage 2")] = result.params
      losses[stage.name] = {"before": result.before, "after": result.after}

  with job.phase("evaluate"):
    test = test_examples(c, tasks)
    embeddings = instruction_embeddings(c, test, base, tokenizer)
    results = evaluate_systems(c, tasks, test, embeddings, base, tokenizer, hypernets,
                               adapters if c.evaluation.per_task_adapters else None)
  nearest = nearest_seen(embeddings, tasks.split)
  tables = [results_table(results)]
  if any(s in results for s in ABLATIONS.values()):
    tables.append("Ablations (each trains stage 2 again without one part):\n"
                  + ablation_table(results))
  if nearest:
    tables.append("Each unseen task's nearest seen task by instruction embedding (the "
                  "hypernetwork's input):\n" + nearest_table(nearest, results))
  summary = {"systems": {s: r["splits"] for s, r in results.items()},
             "per_task": {s: {t: {k: v for k, v in r.items() if k != "predictions"}
                              for t, r in res["tasks"].items()} for s, res in results.items()},
             "losses": losses, "tasks": tasks.split, "nearest_seen": nearest,
             "hypernet_params": hypernet.num_params(params)}
  predictions = [{"system": system, **p} for system, res in results.items()
                 for r in res["tasks"].values() for p in r["predictions"]]
  return job.finish(summary, tables=tables, predictions=predictions)
