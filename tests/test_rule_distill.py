"""Rule distillation job: per-system training configs, bad input, the job's bookkeeping with the
engine's training and decoding faked (fast), and the whole job on a tiny model (slow)."""

import json
import os
import subprocess
import sys
import types

import jax
import pytest

from configs.rule_distill import get_config
from rd import job as job_lib
from rd import config as config_lib
from rd import lora as lora_lib
from rd import train
from rd.methods.rule_distill import job as rule_distill
from rd.config import ConfigError
from rd.weights import adapter
from tests.fixtures import make_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  return make_model_dir(str(tmp_path_factory.mktemp("rule_model") / "model"), sharpness=8.0)


def _tiny(model):
  c = get_config("tiny")
  c.model.path = model
  c.compile_cache = os.path.join(os.path.dirname(model), "jax_compile")
  return c


def test_each_system_gets_its_loss_template_and_teacher():
  c = get_config("")
  assert rule_distill.steps_for(c, 4) == 20 and rule_distill.steps_for(c, 32) == 160
  c.rule.max_steps = 50
  assert rule_distill.steps_for(c, 32) == 50
  configs = {s: rule_distill.training_config(c, s, "paired:w.json,wo.json", 8, "/sft_with")
             for s in rule_distill.TRAINED}
  for s, t in configs.items():
    assert t.data.train == "paired:w.json,wo.json" and t.train.steps == 40
    sft = s.startswith("SFT")
    assert (t.loss.kl_weight, t.loss.ce_weight) == ((0.0, 1.0) if sft else (1.0, 0.0)), s
    assert bool(t.loss.hidden_weight) == (s in ("RD (KL+hidden)", "RD enhanced")), s
    assert t.teacher.lora_workdir == ("/sft_with" if s == "RD enhanced" else ""), s
    rule_in_prompt = s == "SFT w/ rule"
    assert (t.data.template_student == c.data.template_teacher) == rule_in_prompt, s
  assert configs["RD enhanced"].loss.hidden_layers == tuple(c.rule.hidden_layers)
  assert configs["SFT w/ rule"].data.student_len == c.data.teacher_len


@pytest.mark.parametrize("field, value, message", [
    ("rule.rules", ("nope",), "config.rule.rules"),
    ("rule.ks", (8, 4), "config.rule.ks"),
    ("data.global_batch", 3, "config.data.global_batch"),
    ("rule.epochs", 0.0, "config.rule.epochs"),
    ("rule.hidden_layers", (), "config.rule.hidden_layers"),
    ("rule.hidden_weight", 0.0, "config.rule.hidden_weight"),
    ("loss.divergence", "l2", "config.loss.divergence"),
])
def test_bad_config_fails_fast(model, field, value, message):
  c = _tiny(model)
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
    rule_distill.validate(c)


def test_launcher_reports_a_bad_field_in_one_line(model):
  proc = subprocess.run([sys.executable, "-m", "launch.run",
                         "--config=configs/rule_distill.py:tiny", "--workdir=/tmp/never",
                         f"--config.model.path={model}", "--config.rule.n_test=0"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode != 0 and "config.rule.n_test" in proc.stderr, proc.stderr
  assert "Traceback" not in proc.stderr


def _check_job(c, workdir, results, table, *, steps, real):
  """Every rule, k and system is in the results, the table, results.json and on disk; `real`:
  the trainings ran for real (their loss terms are the systems' own)."""
  ks = [f"k{k}" for k in c.rule.ks]
  n = c.rule.n_test
  entry = results["rules"]["add_x"]
  assert entry["n_test"] == {"test_id": n, "test_ood": n}
  assert list(entry["reference"]) == list(rule_distill.REFERENCE)
  assert list(entry["trained"]) == ks
  for k, systems in entry["trained"].items():
    assert list(systems) == list(rule_distill.TRAINED)
    for system, r in systems.items():
      for split in rule_distill.SPLITS:
        assert r[split]["n"] == n and 0 <= r[split]["exact_match"] <= r[split]["contains"] <= 1
      assert r["steps"] == steps
      after = r["train_losses"]["after"]
      terms = {"ce"} if system.startswith("SFT") else (
          {"kl"} if system == "RD (KL)" or not real else {"kl", "hidden"})
      assert set(after) == terms and all(v >= 0 for v in after.values()), (system, after)
      wd = os.path.join(workdir, "add_x", k, rule_distill._DIRS[system])
      assert os.path.exists(os.path.join(wd, "lora", "adapter.safetensors"))
  rows = [line.split("|") for line in table.splitlines() if line.startswith("add_x")]
  assert [(r[1].strip(), r[2].strip()) for r in rows] == (
      [("-", s) for s in rule_distill.REFERENCE]
      + [(k, s) for k in ks for s in rule_distill.TRAINED])
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["rules"] == json.loads(json.dumps(results["rules"]))
  assert set(results["mean_over_rules"]) == set(rule_distill.REFERENCE) | {
      f"{k} {s}" for k in ks for s in rule_distill.TRAINED}
  with open(os.path.join(workdir, "predictions.jsonl")) as f:
    predictions = [json.loads(line) for line in f]
  assert len(predictions) == (2 + 5 * len(ks)) * 2 * n
  assert {p["system"] for p in predictions} == set(rule_distill.SYSTEMS)


def test_every_system_is_trained_and_scored_as_specified_then_reused(model, tmp_path, capsys,
                                                                     monkeypatch):
  """The engine's training and decoding are replaced by recorders (the slow test below runs
  them for real): each system must get its config, in order, and be scored with or without the
  rule in its prompt; a rerun must redo nothing."""
  trained, scored = [], []

  def fake_train(t, workdir, *, base, tokenizer, guard=None):
    system = os.path.basename(workdir)
    if t.teacher.lora_workdir:  # the real loop would load this teacher LoRA now
      assert adapter.load(t.teacher.lora_workdir) is not None
    trained.append((workdir, t))
    params = lora_lib.init(base.spec, config_lib.lora_config(t), jax.random.key(0))
    adapter.save(params, os.path.join(workdir, "lora"))
    terms = {"ce": 1.0} if system.startswith("sft") else {"kl": 1.0}
    return train.Result(types.SimpleNamespace(params=params), terms, terms, False)

  def fake_answer_accuracy(base, lora, tokenizer, examples, template_fn, **kwargs):
    prompts = [template_fn(e) for e in examples]
    with_rule = ["Rule:" in p for p in prompts]
    scored.append((lora is None, with_rule[0], kwargs["bucket"]))
    return {"exact_match": float(with_rule[0]), "contains": float(with_rule[0]),
            "n": len(examples),
            "predictions": [{"query": e.query, "answer": e.response.strip(), "prediction": "",
                             "exact_match": w, "contains": w}
                            for e, w in zip(examples, with_rule)]}

  monkeypatch.setattr(train, "train", fake_train)
  monkeypatch.setattr(rule_distill.evaluate, "answer_accuracy", fake_answer_accuracy)
  c = _tiny(model)
  c.rule.ks = (2, 4)
  workdir = str(tmp_path / "wd")
  results = job_lib.run(rule_distill, c, workdir)
  table = capsys.readouterr().out

  dirs = [rule_distill._DIRS[s] for s in rule_distill.TRAINED]
  assert [os.path.relpath(w, workdir) for w, _ in trained] == [
      os.path.join("add_x", k, d) for k in ("k2", "k4") for d in dirs]
  for (wd, t), system in zip(trained, rule_distill.TRAINED * 2):
    k = os.path.basename(os.path.dirname(wd))
    assert t.data.train.startswith("paired:") and f"/train_{k}_with_rule.json," in t.data.train
    expected = rule_distill.training_config(c, system, t.data.train, 2, t.teacher.lora_workdir)
    assert t.loss.to_dict() == expected.loss.to_dict(), system
    sft_with = os.path.join(os.path.dirname(wd), "sft_with_rule")
    assert t.teacher.lora_workdir == (sft_with if system == "RD enhanced" else "")
  # One prompt length for every generation; the rule is in the prompt of the teacher and of SFT
  # w/ rule only (the fake scores 1 exactly then).
  assert len({bucket for _, _, bucket in scored}) == 1
  entry = results["rules"]["add_x"]
  assert [entry["reference"][s]["test_id"]["exact_match"] for s in rule_distill.REFERENCE] == [
      0.0, 1.0]
  for systems in entry["trained"].values():
    assert {s: r["test_ood"]["exact_match"] for s, r in systems.items()} == {
        s: float(s == "SFT w/ rule") for s in rule_distill.TRAINED}
  _check_job(c, workdir, results, table, steps=2, real=False)

  count = len(trained), len(scored)
  again = job_lib.run(rule_distill, c, workdir)
  assert (len(trained), len(scored)) == count
  assert again["rules"] == json.loads(json.dumps(results["rules"]))


@pytest.mark.slow
def test_the_whole_job_on_a_tiny_model_then_a_rerun_reuses_it(model, tmp_path, capsys,
                                                               monkeypatch):
  """~5 min on 2 shared cores (2.4 min of CPU, mostly XLA compilations of 10 trainings)."""
  c = _tiny(model)
  c.rule.ks = (2, 4)
  workdir = str(tmp_path / "wd")
  results = job_lib.run(rule_distill, c, workdir)
  _check_job(c, workdir, results, capsys.readouterr().out, steps=2, real=True)

  # A rerun trains nothing and scores nothing again: everything is read back.
  def no_training(*args, **kwargs):
    raise AssertionError("a finished training or evaluation ran again")

  monkeypatch.setattr(train, "train", no_training)
  monkeypatch.setattr(rule_distill.evaluate, "answer_accuracy", no_training)
  again = job_lib.run(rule_distill, c, workdir)
  assert again["rules"] == json.loads(json.dumps(results["rules"]))


def test_table_and_means_over_rules_and_ks():
  def scores(i, o):
    return {"test_id": {"exact_match": i}, "test_ood": {"exact_match": o}}

  results = {"rules": {rule: {
      "reference": {s: scores(0.5 * j, 0.25) for j, s in enumerate(rule_distill.REFERENCE)},
      "trained": {k: {s: scores(x, 1.0 - x) for s in rule_distill.TRAINED}
                  for k, x in (("k4", 0.25 * r), ("k8", 0.5))}}
      for r, rule in enumerate(("add_x", "swap_words"))}}
  means = rule_distill.mean_over_rules(results)
  assert means["k4 RD enhanced"] == {"test_id": 0.125, "test_ood": 0.875}
  assert means["k8 SFT w/o rule"] == {"test_id": 0.5, "test_ood": 0.5}
  assert means["teacher (base + rule)"] == {"test_id": 0.5, "test_ood": 0.25}
  lines = rule_distill.results_table(results).splitlines()
  assert len(lines) == 2 + 2 * (2 + 2 * 5)
  assert [c.strip() for c in lines[-1].split("|")] == ["swap_words", "k8", "RD enhanced",
                                                      "50.0", "50.0"]


def test_a_directory_in_the_papers_layout_with_long_rules_kept_whole(model, tmp_path,
                                                                    monkeypatch):
  """The user's own rules in the paper's released layout (`train_{full,no}_{k}shot.json`,
  `test_{full,no}_{id,ood}.json`), here rd's add_x rule with 12 worked examples written that
  way: teacher prompts of 150+ tokens. Too short a `data.teacher_len` stops the job with one
  line naming the length needed; the right one trains on the whole prompts (each training's
  teacher sequences, tokenized as the pipeline does, hold the whole rule)."""
  from rd.data import sources  # pylint: disable=import-outside-toplevel
  from rd.data.templates import Template  # pylint: disable=import-outside-toplevel
  from rd.data.tokenize import Buckets, Featurizer  # pylint: disable=import-outside-toplevel
  from rd.tasks import rule_tasks  # pylint: disable=import-outside-toplevel
  from rd.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  directory, = rule_tasks.write_paper_layout(str(tmp_path / "paper"), rule_tasks.RuleTaskConfig(
      rules=("add_x",), ks=(2, 4), n_test=2, n_shots=12))
  c = _tiny(model)
  c.rule.update(data_dirs=(directory,), ks=(2,))
  rule_distill.validate(c)
  missing = _tiny(model)
  missing.rule.update(data_dirs=(directory,), ks=(2, 8))
  with pytest.raises(ConfigError, match=r"config.rule.data_dirs: .*train_full_8shot.json"):
    rule_distill.validate(missing)

  tokenizer = load_tokenizer(model)
  with pytest.raises(ConfigError, match=r"config.data.teacher_len: 128 is too short .* (\d+) "
                                        r"tokens; set data.teacher_len=\1"):
    job_lib.run(rule_distill, c, str(tmp_path / "short"))

  c.data.teacher_len = 320
  trained = []
  real_train = train.train

  def whole_prompts(t, workdir, **kwargs):
    examples = sources.load(t.data.train)
    template = Template(teacher=t.data.template_teacher, student=t.data.template_student)
    featurize = Featurizer(tokenizer, template, config_lib.buckets(t), overflow="error")
    for e in examples:
      teacher = tokenizer.decode(featurize(e).teacher[0])
      assert e.context in teacher and len(featurize(e).teacher[0]) >= 150
    trained.append(os.path.relpath(workdir, str(tmp_path / "wd")))
    return real_train(t, workdir, **kwargs)

  monkeypatch.setattr(train, "train", whole_prompts)
  c.rule.max_steps = 1
  results = job_lib.run(rule_distill, c, str(tmp_path / "wd"))
  assert list(results["rules"]) == ["add_x"]  # the directory's name
  assert len(trained) == len(rule_distill.TRAINED)
  assert results["rules"]["add_x"]["context"].startswith("Rule: add the letter x")
