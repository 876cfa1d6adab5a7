"""Composed distillation (Snell et al.): more in-context examples than the window holds, in a LoRA.

The window is `data.teacher_len` tokens: every prompt of this job (a teacher's, or a baseline's)
holds BOS, at most `k` examples, a question and `data.response_len` answer tokens within it, `k`
being the most examples that always fit (`Window.capacity`). The task (`rd.tasks.composed_tasks`)
has n >= 4k examples, each the only source of one item's answer. `run` is the experiment:

  1. data: the task, `k`, the chunks (a seeded random order of the n examples cut into
     R = ceil(n / chunk) chunks of at most `chunk` <= k examples);
  2. in-window prompting, the base with the question and no training: zero-shot; k random
     examples; the k examples BM25 ranks best for the question (best last, next to it); BM25's
     top example alone; and, for reference, the relevant example alone ("oracle") or in its
     chunk ("oracle chunk": what a sequential teacher sees);
  3. simultaneous: one training; each training question's teacher is a K-context ensemble
     (probabilities averaged; `Example.contexts`) of random chunks that fit ("partition": a
     fresh random partition of all n examples into R chunks, so K = R and exactly one context
     holds the relevant example; "random": K independent random chunks)   -> simultaneous/
  4. sequential: R rounds; round r distills the base with chunk r in its prompt on the
     questions about chunk r's items, its student starting from round r-1's LoRA
     (`lora.init_from`)                                                     -> sequential/round_r
  5. recursive: R rounds; round r's teacher is round r-1's student (`teacher.lora_workdir`)
     with chunk r in its prompt, trained on the questions about chunks 1..r, its student
     starting from that LoRA; round 1 is sequential's round 1 (the same run) -> recursive/round_r
  6. evaluation on the held-out questions (for the students also per chunk, i.e. by the round
     that taught the item, and on the training questions): greedy exact match; a table,
     `results.json`, `predictions.jsonl`.

Every training is `rd.train.train` in its own workdir; a finished one (its `done.json`, `rd.job`)
is read back instead of run again, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from rd import config as config_lib
from rd import evaluate, retrieval
from rd.config import check
from rd.data.templates import prompt_fn
from rd import lora as lora_lib
from rd.tasks import composed_tasks as tasks
from rd.data.examples import Example, write_jsonl
from rd.metrics import format_table

FORMS = ("simultaneous", "sequential", "recursive")
ENSEMBLES = ("partition", "random")
BASELINES = ("zero-shot", "random k", "BM25 k", "BM25 top 1", "oracle", "oracle chunk")
# The in-window systems "the student beats the best in-window prompting" compares against. The
# oracles are references, handed the relevant example: alone, or in its chunk (what the
# sequential teacher sees).
IN_WINDOW = ("zero-shot", "random k", "BM25 k", "BM25 top 1")

# ----------------------------------------------------------------------------------------------
# Configuration


def validate(c: ml_collections.ConfigDict) -> None:
  """The engine's checks plus this job's fields; raises `config.ConfigError`. The job writes its
  own training files, so the engine's checks run with a stand-in `data.train` (never read)."""
  stand_in = ml_collections.ConfigDict(c.to_dict())
  stand_in.data.train = stand_in.data.train or "tfds:composed_stand_in:train"
  config_lib.validate(stand_in)
  try:
    task_config(c)
  except ValueError as e:
    raise config_lib.ConfigError(f"config.task: {e}") from None
  forms = tuple(c.composed.forms)
  check(bool(forms) and set(forms) <= set(FORMS) and len(set(forms)) == len(forms),
         "composed.forms", f"a non-empty selection of {FORMS}, each at most once")
  check(c.composed.chunk >= 0, "composed.chunk", "must be >= 0 (0 = as many as fit)")
  check(c.composed.ensemble in ENSEMBLES, "composed.ensemble", f"choose from {ENSEMBLES}")
  check(c.composed.contexts >= 0, "composed.contexts", "must be >= 0 (0 = one per chunk)")
  check(c.composed.epochs > 0, "composed.epochs", "must be > 0")
  check(c.composed.min_ratio >= 1, "composed.min_ratio", "must be >= 1")
  check(c.evaluation.max_new_tokens >= 1, "evaluation.max_new_tokens", "must be >= 1")
  check(c.evaluation.batch_size >= 1, "evaluation.batch_size", "must be >= 1")


def task_config(c) -> tasks.TaskConfig:
  return tasks.TaskConfig(**c.task.to_dict())


def _copy(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(c.to_dict())


def training_config(c, train_path: str, num_examples: int, *, teacher_from: str = "",
                    init_from: str = "") -> ml_collections.ConfigDict:
  """One training of the job: its data, `composed.epochs` passes over it, and where its
  teacher's LoRA and its student's first LoRA come from (earlier rounds' workdirs)."""
  t = _copy(c)
  t.data.update(train=train_path, eval="")
  steps = max(1, math.ceil(c.composed.epochs * num_examples / c.data.global_batch))
  t.train.update(steps=steps, checkpoint_every=steps, log_every=min(c.train.log_every, steps))
  t.teacher.lora_workdir = teacher_from
  t.lora.init_from = init_from
  return t


# ----------------------------------------------------------------------------------------------
# The window


class Window:
  """Prompt lengths in tokens, as the training pipeline counts them: BOS + the rendered
  teacher template + `response_len` answer tokens must be at most `length` (`teacher_len`)."""

  def __init__(self, tokenizer, template: str, length: int, response_len: int,
               queries: Sequence[str]):
    self.tokenizer, self.template, self.length = tokenizer, template, length
    self.reserved = 1 + response_len
    self._longest = max(queries, key=self.query_tokens)

  def query_tokens(self, query: str) -> int:
    return len(self.tokenizer.encode(query, add_special_tokens=False))

  def tokens(self, texts: Sequence[str], query: str | None = None) -> int:
    prompt = self.template.format(context=join(texts), query=self._longest if query is None
                                  else query)
    return len(self.tokenizer.encode(prompt, add_special_tokens=False)) + self.reserved

  def fits(self, texts: Sequence[str]) -> bool:
    """With the longest question of the task."""
    return self.tokens(texts) <= self.length

  def capacity(self, texts: Sequence[str]) -> int:
    """The most examples that always fit: the k longest of `texts`."""
    longest = sorted(texts, key=lambda t: -len(self.tokenizer.encode(t,
                                                                       add_special_tokens=False)))
    k = 0
    while k < len(longest) and self.fits(longest[:k + 1]):
      k += 1
    return k


def join(texts: Sequence[str]) -> str:
  return tasks.EXAMPLE_SEPARATOR.join(texts)


def random_chunks(num: int, size: int, rng: np.random.Generator) -> list[list[int]]:
  """A random order of range(num) cut into ceil(num / size) chunks of near-equal sizes."""
  order = rng.permutation(num)
  return [list(map(int, part)) for part in np.array_split(order, math.ceil(num / size))]


def ensemble_contexts(num: int, size: int, contexts: int, mode: str,
                      rng: np.random.Generator) -> list[list[int]]:
  """One training question's K teacher contexts, each a random chunk of at most `size` of the
  `num` examples: a fresh random partition ("partition", K = ceil(num / size), or `contexts` of
  its chunks when that is smaller), or `contexts` independent random chunks ("random")."""
  if mode == "partition":
    chunks = random_chunks(num, size, rng)
    return chunks[:contexts] if contexts else chunks
  return [list(map(int, rng.choice(num, size, replace=False))) for _ in range(contexts)]


# ----------------------------------------------------------------------------------------------
# Training sets of each form


def _with_context(question: Example, context: str = "", contexts: Sequence[str] = ()) -> Example:
  return Example(context=context, query=question.query, response=question.response,
                 meta=question.meta, contexts=tuple(contexts))


def simultaneous_set(train_qs, texts, size, c, rng) -> list[Example]:
  out = []
  for q in train_qs:
    chunks = ensemble_contexts(len(texts), size, c.composed.contexts, c.composed.ensemble, rng)
    out.append(_with_context(q, contexts=[join([texts[i] for i in ch]) for ch in chunks]))
  return out


def round_sets(train_qs, texts, chunks, form: str) -> list[list[Example]]:
  """Round r's training questions, with chunk r as the teacher's context: those about chunk r's
  items (sequential), or about chunks 1..r (recursive: the teacher knows the earlier ones)."""
  sets = []
  for r, chunk in enumerate(chunks):
    items = set(chunk) if form == "sequential" else {i for ch in chunks[:r + 1] for i in ch}
    context = join([texts[i] for i in chunk])
    sets.append([_with_context(q, context) for q in train_qs if q.meta["item"] in items])
  return sets


# ----------------------------------------------------------------------------------------------
# The experiment


def _train(job, name: str, examples: Sequence[Example], base, tokenizer, *,
           teacher_from: str = "", init_from: str = "") -> tuple[Any, str, int]:
  """Trains (or reads back, when finished) one LoRA in `<workdir>/<name>`: (lora, its workdir,
  steps). Its training file is written once, so a resumed training reads the same data."""
  run_dir = job.path(name)
  path = os.path.join(run_dir, "train.jsonl")

  def write():
    if job.primary:
      os.makedirs(run_dir, exist_ok=True)
      write_jsonl(path, examples)
    return {"examples": len(examples)}

  job.once(os.path.join(run_dir, "data"), write)
  t = training_config(job.config, path, len(examples), teacher_from=teacher_from,
                      init_from=init_from)
  lora, _ = job.trained_lora(t, name, base=base, tokenizer=tokenizer)
  return lora, run_dir, t.train.steps


def baseline_prompts(test, texts, k, chunks, retriever, rng
                     ) -> tuple[dict[str, list[Example]], dict[str, dict[str, float]]]:
  """The baselines' test questions with their prompt's examples as the context, and for each
  baseline how many examples its prompts hold (at most) and how often the relevant one."""
  item = lambda q: q.meta["item"]  # noqa: E731
  chunk_of = {i: ch for ch in chunks for i in ch}
  bm25 = [retriever.top(q.query, k)[::-1] for q in test]  # best last, next to the question
  picks = {"zero-shot": [[] for _ in test],
           "random k": [list(rng.choice(len(texts), k, replace=False)) for _ in test],
           "BM25 k": bm25, "BM25 top 1": [ids[-1:] for ids in bm25],
           "oracle": [[item(q)] for q in test],
           "oracle chunk": [chunk_of[item(q)] for q in test]}
  prompts = {name: [_with_context(q, join([texts[i] for i in ids]))
                    for q, ids in zip(test, chosen)] for name, chosen in picks.items()}
  info = {name: {"examples_in_prompt": max(len(ids) for ids in chosen),
                 "relevant_in_prompt": float(np.mean([item(q) in ids
                                                      for q, ids in zip(test, chosen)]))}
          for name, chosen in picks.items()}
  return prompts, info


@dataclasses.dataclass
class Plan:
  """The task laid out for the window: n examples, k of which fit, and the chunks."""
  examples: list[Example]
  train: list[Example]
  test: list[Example]
  k: int
  chunk: int
  chunks: list[list[int]]
  example_tokens: int

  @property
  def texts(self) -> list[str]:
    return [e.context for e in self.examples]


def make_plan(c, tokenizer, rng: np.random.Generator) -> Plan:
  task = tasks.make_task(task_config(c))
  texts = [e.context for e in task["examples"]]
  window = Window(tokenizer, c.data.template_teacher, c.data.teacher_len, c.data.response_len,
                  [q.query for q in task["train"] + task["test"]])
  k = window.capacity(texts)
  if k < 1 or len(texts) < c.composed.min_ratio * k:
    raise config_lib.ConfigError(
        f"config.data.teacher_len: {k} examples fit in {c.data.teacher_len} tokens and the task "
        f"has {len(texts)}; composed distillation needs n >= composed.min_ratio "
        f"({c.composed.min_ratio}) x k: raise task.num_items or lower data.teacher_len")
  chunk = min(c.composed.chunk or k, k)
  return Plan(task["examples"], task["train"], task["test"], k, chunk,
              random_chunks(len(texts), chunk, rng),
              max(window.query_tokens(t) for t in texts))


class Scorer:
  """Greedy exact match of the base + a LoRA on questions, collecting predictions.

  The base is scored as base + a LoRA whose B is zero (numerically the base), and prompts are
  padded to the window (prompts with examples) or to `student_len` (questions alone): the base
  and every student then share two compiled generation programs.
  """

  def __init__(self, job, base, tokenizer):
    self.job, self.c, self.base, self.tokenizer = job, job.config, base, tokenizer
    self.zero_lora = job.replicate(lora_lib.init(base.spec, config_lib.lora_config(self.c),
                                                 jax.random.key(self.c.train.seed)))
    self.predictions: list[dict[str, Any]] = []

  def __call__(self, name: str, lora, questions: Sequence[Example], *, with_examples: bool,
               field: str = "heldout") -> dict[str, Any]:
    d = self.c.data
    template, bucket = ((d.template_teacher, d.teacher_len) if with_examples else
                        (d.template_student, d.student_len))
    with self.job.phase(f"eval: {name} ({field})"):
      r = evaluate.answer_accuracy(
          self.base, self.zero_lora if lora is None else lora, self.tokenizer, questions,
          prompt_fn(template), max_new_tokens=self.c.evaluation.max_new_tokens,
          batch_size=self.c.evaluation.batch_size, bucket=bucket)
    predictions = [{"system": name, "questions": field, "item": q.meta["item"], **p}
                   for q, p in zip(questions, r.pop("predictions"))]
    self.predictions.extend(predictions)
    return r


def run_baselines(plan: Plan, score: Scorer, retriever: retrieval.Retriever, rng
                  ) -> dict[str, dict[str, Any]]:
  prompts, info = baseline_prompts(plan.test, plan.texts, plan.k, plan.chunks, retriever, rng)
  return {name: {"heldout": score(name, None, prompts[name], with_examples=name != "zero-shot"),
                 **info[name]} for name in BASELINES}


def train_forms(job, plan: Plan, base, tokenizer, rng
                ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
  """Every form's final LoRA, and a log of its trainings (round by round)."""
  c = job.config
  loras, logs = {}, {}
  if "simultaneous" in c.composed.forms:
    with job.phase("train: simultaneous"):
      data = simultaneous_set(plan.train, plan.texts, plan.chunk, c, rng)
      loras["simultaneous"], run_dir, steps = _train(job, "simultaneous", data, base, tokenizer)
    logs["simultaneous"] = [{"workdir": os.path.relpath(run_dir, job.workdir), "steps": steps,
                             "examples": len(data),
                             "contexts": len(data[0].contexts)}]
  first_round = None
  for form in ("sequential", "recursive"):
    if form not in c.composed.forms:
      continue
    previous, logs[form] = "", []
    for r, data in enumerate(round_sets(plan.train, plan.texts, plan.chunks, form)):
      teacher_from = previous if form == "recursive" else ""
      with job.phase(f"train: {form} round {r + 1}"):
        if r == 0 and first_round is not None:  # recursive round 1 == sequential round 1
          lora, run_dir, steps = first_round
        else:
          lora, run_dir, steps = _train(job, os.path.join(form, f"round_{r + 1}"), data, base,
                                        tokenizer, teacher_from=teacher_from,
                                        init_from=previous)
      first_round = first_round or (lora, run_dir, steps)
      relative = lambda path: path and os.path.relpath(path, job.workdir)  # noqa: E731
      logs[form].append({"workdir": relative(run_dir), "steps": steps, "examples": len(data),
                         "items": sorted({q.meta["item"] for q in data}),
                         "teacher_lora": relative(teacher_from),
                         "init_from": relative(previous)})
      previous = run_dir
    loras[form] = lora
  return loras, logs


def run(job) -> dict[str, Any]:
  """The whole experiment (see the module docstring); returns what `results.json` holds."""
  c = job.config
  rng = np.random.default_rng(c.composed.seed)
  base, tokenizer = job.load()
  plan = make_plan(c, tokenizer, rng)
  if job.primary:
    for name in ("examples", "train", "test"):
      write_jsonl(job.path(f"{name}.jsonl"), getattr(plan, name))
  logging.info("window %d tokens: k = %d of n = %d examples fit; %d chunks of <= %d",
               c.data.teacher_len, plan.k, len(plan.texts), len(plan.chunks), plan.chunk)

  score = Scorer(job, base, tokenizer)
  retriever = retrieval.Retriever(plan.texts)  # BM25 over the n examples
  systems = run_baselines(plan, score, retriever, rng)
  loras, logs = train_forms(job, plan, base, tokenizer, rng)
  for form, lora in loras.items():
    systems[form] = {"heldout": score(form, lora, plan.test, with_examples=False),
                     "train": score(form, lora, plan.train, with_examples=False,
                                    field="train")}
    systems[form]["heldout_by_chunk"] = by_chunk(score.predictions, form, plan)
  results = summarize(c, plan, systems, logs, retriever)
  return job.finish(results, tables=[results_table(results)], predictions=score.predictions)


def by_chunk(predictions: Sequence[dict[str, Any]], system: str, plan: Plan) -> list[float]:
  """A system's held-out exact match over the questions about each chunk's items, chunk by
  chunk (the round that taught them): what a sequential student forgets shows in early chunks."""
  mine = [p for p in predictions if p["system"] == system and p["questions"] == "heldout"]
  out = []
  for chunk in plan.chunks:
    right = [p["exact_match"] for p in mine if p["item"] in chunk]
    out.append(sum(right) / len(right) if right else 0.0)
  return out


def summarize(c, plan: Plan, systems, logs, retriever: retrieval.Retriever) -> dict[str, Any]:
  """What `results.json` holds: every system's scores, the window, the trainings, and whether
  the best composed form beats the best in-window prompting on the held-out questions."""
  em = lambda name: systems[name]["heldout"]["exact_match"]  # noqa: E731
  best_in_window = max(IN_WINDOW, key=em)
  best_composed = max(logs, key=em) if logs else None
  lexical = [q for q in plan.train if q.meta["form"] == "lexical"]
  return {
      "systems": systems,
      "window": {"tokens": c.data.teacher_len, "k": plan.k, "n": len(plan.texts),
                 "ratio": len(plan.texts) / plan.k, "chunk": plan.chunk,
                 "rounds": len(plan.chunks), "example_tokens": plan.example_tokens},
      "chunks": plan.chunks, "trainings": logs,
      "n_test": len(plan.test), "n_train": len(plan.train),
      "bm25_hit_at_k": {
          "heldout": systems["BM25 k"]["relevant_in_prompt"],
          "lexical": float(np.mean([q.meta["item"] in retriever.top(q.query, plan.k)
                                    for q in lexical])) if lexical else None},
      "best_in_window": {"system": best_in_window, "exact_match": em(best_in_window)},
      "best_composed": best_composed and {"system": best_composed,
                                          "exact_match": em(best_composed)},
      "composed_beats_in_window": bool(best_composed) and em(best_composed) > em(best_in_window),
  }


def results_table(results: dict[str, Any]) -> str:
  """One row per system: held-out exact match (students: also chunk by chunk, and on the
  training questions), and for in-window systems the examples in the prompt and how often the
  relevant one is among them."""
  w = results["window"]
  rows = []
  for name, r in results["systems"].items():
    train_em = r.get("train", {}).get("exact_match")
    in_prompt = r.get("examples_in_prompt")
    chunks = r.get("heldout_by_chunk")
    rows.append([name, f"{100 * r['heldout']['exact_match']:.1f}",
                 f"{100 * r['heldout']['contains']:.1f}",
                 "" if chunks is None else " ".join(f"{100 * x:.0f}" for x in chunks),
                 "" if train_em is None else f"{100 * train_em:.1f}",
                 "0 (LoRA)" if in_prompt is None else str(in_prompt),
                 "" if in_prompt is None else f"{100 * r['relevant_in_prompt']:.0f}"])
  header = (f"window {w['tokens']} tokens: k = {w['k']} of n = {w['n']} examples fit "
            f"(n/k = {w['ratio']:.1f}); {w['rounds']} chunks of <= {w['chunk']}; "
            f"{results['n_test']} held-out questions")
  return header + "\n" + format_table(rows, ["system", "held-out EM %", "contains %",
                                             "by chunk %", "train-question EM %",
                                             "examples in prompt", "relevant in prompt %"])
