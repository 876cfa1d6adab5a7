"""Rule distillation (Yang et al.): a textual rule into a LoRA, against SFT, by sample size k.

The teacher is the base model with a rule in its prompt (the rule's text and a few worked
examples: `rd.tasks.rule_tasks`); the student is the same base without it, plus a LoRA. For each
rule and each training size k (nested subsets of one list), `run` trains five students, each
in its own workdir `<workdir>/<rule>/k<k>/<system>/`:

  SFT w/o rule     cross-entropy on the gold answers, the rule nowhere
  SFT w/ rule      cross-entropy with the rule in the student's prompt (tested with it too)
  RD (KL)          KL(teacher || student) on the response tokens
  RD (KL+hidden)   the same + beta * MSE of L2-normalized hidden states on chosen layers
  RD enhanced      KL + hidden, with a teacher that also carries the SFT-w/-rule LoRA of the
                   same k (`teacher.lora_workdir`)

and scores each on greedy exact match of the answer line, on in-distribution test inputs and on
out-of-distribution ones (longer words, bigger numbers); the base model without the rule and
the teacher (base + rule) are the untrained reference rows. It prints the sample-efficiency
table (rows k x system, columns ID / OOD exact match) and writes `<workdir>/results.json` and
`<workdir>/predictions.jsonl`.

Data: rd's generated rule tasks (`rule.rules`), or the user's own in the paper's released
layout (`rule.data_dirs`: one directory per rule with `train_{full,no}_{k}shot.json`,
`test_{full,no}_{id,ood}.json` and optionally `valid_{full,no}_seed*.json`, paired alpaca
JSON; `configs/rule_distill.py:paper` sets the Alpaca prompt those files are written for).

Epochs: every training runs `rule.epochs` passes over its k examples (`train.steps` is set
from it; `rule.max_steps` caps it) with the teacher cached (`teacher.cache`), so the teacher
runs once per training. Rerunning the job resumes: finished trainings and evaluations are read
back from their `done.json` (`rd.job`), an interrupted training resumes from its checkpoint.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import ml_collections
from absl import logging

from rd import config as config_lib
from rd import evaluate
from rd.config import check
from rd.data.templates import prompt_fn
from rd.generate import prompt_bucket
from rd.cache import cache_dir
from rd.data import sources
from rd.tasks import rule_tasks
from rd.data.examples import Example
from rd.metrics import format_table

REFERENCE = ("base w/o rule", "teacher (base + rule)")
TRAINED = ("SFT w/o rule", "SFT w/ rule", "RD (KL)", "RD (KL+hidden)", "RD enhanced")
SYSTEMS = REFERENCE + TRAINED
SPLITS = ("test_id", "test_ood")
_DIRS = {"SFT w/o rule": "sft_without_rule", "SFT w/ rule": "sft_with_rule",
         "RD (KL)": "rd_kl", "RD (KL+hidden)": "rd_kl_hidden", "RD enhanced": "rd_enhanced"}
# Systems whose prompt holds the rule at test time (they were trained or built that way).
_RULE_IN_PROMPT = ("teacher (base + rule)", "SFT w/ rule")

# ----------------------------------------------------------------------------------------------
# Configuration


def validate(c: ml_collections.ConfigDict) -> None:
  """This job's fields plus the engine's checks; raises `config.ConfigError`."""
  r = c.rule
  ks = list(r.ks)
  check(bool(ks) and min(ks) >= 1 and ks == sorted(set(ks)), "rule.ks",
        "must be increasing positive training sizes, e.g. (4, 8, 16, 32)")
  if r.data_dirs:
    for directory in r.data_dirs:
      try:
        check(os.path.isdir(directory), "rule.data_dirs", f"{directory!r} is not a directory")
        rule_tasks.paper_files(directory, ks)
      except FileNotFoundError as e:
        check(False, "rule.data_dirs", f"{e}; each directory needs the paper's files for every "
              "k of rule.ks (train_{full,no}_{k}shot.json) and test_{full,no}_{id,ood}.json")
  else:
    check(bool(r.rules) and set(r.rules) <= set(rule_tasks.RULES), "rule.rules",
          f"choose one or more of {sorted(rule_tasks.RULES)}")
  check(c.data.global_batch <= ks[0], "data.global_batch",
        f"must be <= the smallest k ({ks[0]}): a batch never holds more than k examples")
  check(r.n_test >= 1, "rule.n_test", "must be >= 1")
  check(r.n_shots >= 0, "rule.n_shots", "must be >= 0")
  check(r.epochs > 0, "rule.epochs", "must be > 0")
  check(r.max_steps >= 0, "rule.max_steps", "must be >= 0 (0 = no cap)")
  check(r.hidden_weight > 0, "rule.hidden_weight", "must be > 0 (beta of RD (KL+hidden))")
  check(bool(r.hidden_layers), "rule.hidden_layers", "name at least one block to align")
  check(c.evaluation.max_new_tokens >= 1, "evaluation.max_new_tokens", "must be >= 1")
  check(c.evaluation.batch_size >= 1, "evaluation.batch_size", "must be >= 1")
  check(c.data.template_teacher.count("{context}") == 1, "data.template_teacher",
        "must hold {context} (the rule) once")
  # The engine's checks, on the config of a first training (data.train is set per training).
  probe = ml_collections.ConfigDict(c.to_dict())
  probe.data.train = "paired:/dev/null,/dev/null"
  config_lib.validate(probe)


def steps_for(c, k: int) -> int:
  """`rule.epochs` passes over k examples in batches of `data.global_batch`, capped."""
  steps = math.ceil(c.rule.epochs * k / c.data.global_batch)
  return min(steps, c.rule.max_steps) if c.rule.max_steps else steps


def training_config(c, system: str, train_source: str, k: int, sft_with_rule_dir: str = "",
                    eval_source: str = "") -> ml_collections.ConfigDict:
  """The engine config of one trained system (see the module docstring); `eval_source`: the
  rule's validation pairs, for the eval losses (default: the first training examples)."""
  t = ml_collections.ConfigDict(c.to_dict())
  t.data.train, t.data.eval = train_source, eval_source
  t.train.steps = steps_for(c, k)
  t.teacher.lora_workdir = ""
  if system.startswith("SFT"):
    t.loss.update(kl_weight=0.0, ce_weight=1.0, hidden_weight=0.0, hidden_layers=())
    t.teacher.cache = False
    if system == "SFT w/ rule":
      t.data.template_student = c.data.template_teacher
      t.data.student_len = c.data.teacher_len
    return t
  t.loss.update(kl_weight=1.0, ce_weight=0.0, hidden_weight=0.0, hidden_layers=())
  if system in ("RD (KL+hidden)", "RD enhanced"):
    t.loss.update(hidden_weight=c.rule.hidden_weight, hidden_layers=tuple(c.rule.hidden_layers))
  if system == "RD enhanced":
    t.teacher.lora_workdir = sft_with_rule_dir
  return t


# ----------------------------------------------------------------------------------------------
# Pieces of the experiment


def _scores(result: dict[str, Any]) -> dict[str, Any]:
  return {split: {k: v for k, v in r.items() if k != "predictions"}
          for split, r in result.items()}


def _rows(results: dict[str, Any]) -> list[list[str]]:
  pct = lambda s: f"{100 * s['exact_match']:.1f}"  # noqa: E731
  rows = []
  for rule, entry in results["rules"].items():
    for system in REFERENCE:
      s = entry["reference"][system]
      rows.append([rule, "-", system, pct(s["test_id"]), pct(s["test_ood"])])
    for k, systems in entry["trained"].items():
      for system, s in systems.items():
        rows.append([rule, k, system, pct(s["test_id"]), pct(s["test_ood"])])
  return rows


def results_table(results: dict[str, Any]) -> str:
  return format_table(_rows(results), ["rule", "k", "system", "ID exact match %",
                                       "OOD exact match %"])


def mean_over_rules(results: dict[str, Any]) -> dict[str, dict[str, float]]:
  """Exact match averaged over rules, per (k, system) and per reference system."""
  rules = list(results["rules"].values())
  out = {}
  for system in REFERENCE:
    out[system] = {split: sum(r["reference"][system][split]["exact_match"] for r in rules)
                   / len(rules) for split in SPLITS}
  for k in rules[0]["trained"]:
    for system in TRAINED:
      out[f"{k} {system}"] = {
          split: sum(r["trained"][k][system][split]["exact_match"] for r in rules) / len(rules)
          for split in SPLITS}
  return out


# ----------------------------------------------------------------------------------------------
# The experiment


def prepare_data(c, workdir: str) -> dict[str, Any]:
  """The rules' manifest: the user's directories in the paper's layout (`rule.data_dirs`), or
  rd's rule tasks generated into `<workdir>/data` from `rule.*`."""
  if c.rule.data_dirs:
    return {"rules": {os.path.basename(os.path.normpath(d)): rule_tasks.paper_entry(d, c.rule.ks)
                      for d in c.rule.data_dirs}}
  config = rule_tasks.RuleTaskConfig(rules=tuple(c.rule.rules), ks=tuple(c.rule.ks),
                                     n_test=c.rule.n_test, n_shots=c.rule.n_shots,
                                     seed=c.rule.seed)
  return rule_tasks.write_rule_tasks(os.path.join(workdir, "data"), config)


def run_rule(job, rule: str, entry: dict[str, Any], tests: dict[str, list[Example]],
             bucket: int, base, tokenizer, predictions: list[dict[str, Any]]) -> dict[str, Any]:
  """Every system of one rule: reference rows, then k by k the five trainings. `bucket`: the
  prompt length of every generation (one compilation with a LoRA, one without)."""
  c = job.config

  def score(name: str, lora, template: str, directory: str) -> dict[str, Any]:
    def scored():
      return {split: evaluate.answer_accuracy(
          base, lora, tokenizer, examples, prompt_fn(template),
          max_new_tokens=c.evaluation.max_new_tokens, batch_size=c.evaluation.batch_size,
          bucket=bucket) for split, examples in tests.items()}
    with job.phase("evaluate"):
      result = job.once(job.path(rule, directory), scored)
    for split, r in result.items():
      predictions.extend({"rule": rule, "system": name, "split": split, **p}
                         for p in r["predictions"])
    return _scores(result)

  reference = {
      "base w/o rule": score("base w/o rule", None, c.data.template_student, "eval_base"),
      "teacher (base + rule)": score("teacher (base + rule)", None, c.data.template_teacher,
                                     "eval_teacher"),
  }
  logging.info("%s: base %s, teacher %s", rule, reference["base w/o rule"],
               reference["teacher (base + rule)"])
  trained = {}
  for k in c.rule.ks:
    source = entry["splits"][f"train_k{k}"]
    systems = {}
    for system in TRAINED:
      sub = os.path.join(rule, f"k{k}", _DIRS[system])
      t = training_config(c, system, source, k, job.path(rule, f"k{k}", _DIRS["SFT w/ rule"]),
                          entry["splits"].get("valid", ""))
      with job.phase("train"):
        lora, losses = job.trained_lora(t, sub, base=base, tokenizer=tokenizer)
      template = (c.data.template_teacher if system in _RULE_IN_PROMPT
                  else c.data.template_student)
      systems[system] = {**score(system, lora, template, os.path.join(sub, "eval")),
                         "train_losses": losses, "steps": t.train.steps}
      logging.info("%s k=%d %s: ID %.3f OOD %.3f", rule, k, system,
                   systems[system]["test_id"]["exact_match"],
                   systems[system]["test_ood"]["exact_match"])
    trained[f"k{k}"] = systems
  return {"context": entry["context"], "reference": reference, "trained": trained,
          "n_test": {split: len(e) for split, e in tests.items()}}


def use_compile_cache(setting: str) -> str | None:
  """Turns on JAX's persistent compilation cache ("auto": `$RD_CACHE_DIR/jax_compile`; "": off).

  Every training of the job jits its own step, teacher and eval functions; most are the same
  programs (same shapes, same losses) for every k and every rule, so all but the first
  compilation of each become a disk read (Gemma 3 270M on CPU: ~30 s per compilation)."""
  if not setting:
    return None
  path = str(cache_dir("jax_compile")) if setting == "auto" else setting
  jax.config.update("jax_compilation_cache_dir", path)
  return path


def run(job) -> dict[str, Any]:
  """The whole experiment (see the module docstring); returns what `results.json` holds."""
  c = job.config
  use_compile_cache(c.compile_cache)
  base, tokenizer = job.load()
  with job.phase("data"):
    manifest = job.once(job.path("data"), lambda: prepare_data(c, job.workdir))
    tests = {rule: {split: sources.load(entry["splits"][split]) for split in SPLITS}
             for rule, entry in manifest["rules"].items()}
    everything = [e for splits in tests.values() for examples in splits.values()
                  for e in examples]
    evaluate.check_max_new_tokens(c, tokenizer, everything)
    bucket = prompt_bucket(tokenizer, [prompt_fn(t)(e) for e in everything
                                       for t in (c.data.template_student,
                                                 c.data.template_teacher)])
  predictions: list[dict[str, Any]] = []
  results: dict[str, Any] = {"rules": {}}
  for rule, entry in manifest["rules"].items():
    results["rules"][rule] = run_rule(job, rule, entry, tests[rule], bucket, base, tokenizer,
                                      predictions)
  results.update(mean_over_rules=mean_over_rules(results),
                 steps={f"k{k}": steps_for(c, k) for k in c.rule.ks})
  return job.finish(results, tables=[results_table(results)], predictions=predictions)
