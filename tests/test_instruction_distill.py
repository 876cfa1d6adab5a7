"""Instruction internalization: the job end to end on a tiny random model, its data and checks."""

import json
import os
import subprocess
import sys
import types

import pytest

from configs.instruction_distill import get_config
from rd import job as job_lib
from rd import train
from rd.weights import adapter
from rd.methods.context_distill import instructions as idist
from rd.config import ConfigError
from rd.tasks import task_suite as ts
from rd.data.examples import read_jsonl
from tests.fixtures import make_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  return make_model_dir(str(tmp_path_factory.mktemp("model")), sharpness=8.0)


def _tiny_config(model):
  c = get_config("tiny")
  c.model.path = model
  return c


def test_splits_are_disjoint_and_share_the_shots(model):
  c = _tiny_config(model)
  train_set, test_set = idist.task_splits(c, "antonym")
  assert len(train_set) == c.suite.n_train and len(test_set) == c.suite.n_test
  assert not {e.query for e in train_set} & {e.query for e in test_set}
  assert len({e.context for e in train_set + test_set}) == 1
  e = test_set[0]
  assert idist.teacher_prompt(e) == f"{e.context}\n\nInput: {e.query}\nOutput:"
  assert idist.student_prompt(e) == f"Input: {e.query}\nOutput:"


def test_teacher_answers_replace_the_response_and_keep_the_gold():
  examples = ts.task_examples("first_word", 2)
  out = idist.with_teacher_answers(examples, ["\n dog\nInput: x", ""])
  assert [e.response for e in out] == [" dog\n", " \n"]
  assert [e.meta["answer_teacher"] for e in out] == ["dog", ""]
  assert [e.meta["answer"] for e in out] == [e.meta["answer"] for e in examples]


def test_the_job_calls_the_engine_with_each_training_s_data_and_losses(model, tmp_path,
                                                                      monkeypatch, capsys):
  """The job's own part, fast: `rd.train.train` is replaced by a stand-in that records its
  configs and returns an untrained LoRA; generation and scoring run for real."""
  import jax  # pylint: disable=import-outside-toplevel
  from rd import config as config_lib  # pylint: disable=import-outside-toplevel
  from rd import lora as lora_lib  # pylint: disable=import-outside-toplevel
  from rd.weights.load import load_model  # pylint: disable=import-outside-toplevel
  calls = []
  spec = load_model(model).spec

  def fake_train(c, workdir, *, base, tokenizer, guard=None):
    calls.append((c, workdir))
    params = lora_lib.init(spec, config_lib.lora_config(c), jax.random.key(0))
    adapter.save(params, os.path.join(workdir, "lora"))
    return types.SimpleNamespace(state=types.SimpleNamespace(params=params), before={"ce": 2.0},
                                 after={"ce": 1.0}, stopped_early=False)

  monkeypatch.setattr(train, "train", fake_train)
  c = _tiny_config(model)
  workdir = str(tmp_path / "wd")
  results = job_lib.run(idist, c, workdir)
  assert [os.path.basename(w) for _, w in calls] == list(idist.TRAININGS)
  distill, sft_teacher, sft_gold = (t for t, _ in calls)
  task_dir = os.path.join(workdir, "antonym")
  assert distill.data.train == sft_teacher.data.train == os.path.join(task_dir,
                                                                       "train_teacher.jsonl")
  assert sft_gold.data.train == os.path.join(task_dir, "train_gold.jsonl")
  assert {t.data.eval for t, _ in calls} == {os.path.join(task_dir, "test.jsonl")}
  assert (distill.loss.kl_weight, distill.loss.ce_weight, distill.teacher.cache) == (1, 0, True)
  for sft in (sft_teacher, sft_gold):
    assert (sft.loss.kl_weight, sft.loss.ce_weight, sft.teacher.cache) == (0, 1, False)
  # untrained LoRAs: every student answers like the base
  r = results["tasks"]["antonym"]["systems"]
  assert r["student after"] == r["SFT gold"] == r["student before"]
  assert "student after" in capsys.readouterr().out
  c.distill.responses = "gold"
  calls.clear()
  job_lib.run(idist, c, str(tmp_path / "wd_gold"))
  assert calls[0][0].data.train.endswith("train_gold.jsonl")


@pytest.mark.slow  # ~70 s of CPU on 2 cores (three trainings' compilations)
def test_the_whole_job_on_a_tiny_model(model, tmp_path):
  """Through the launcher, in its own process: its persistent compilation cache (global JAX
  state) lets the second SFT reuse the first one's programs, a third of the job's time."""
  c = _tiny_config(model)
  workdir = str(tmp_path / "wd")
  proc = subprocess.run([sys.executable, "-m", "launch.run",
                         "--config=configs/instruction_distill.py:tiny", f"--workdir={workdir}",
                         f"--config.model.path={model}",
                         f"--compilation_cache={tmp_path / 'compiled'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = proc.stdout
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert list(results["tasks"]) == list(c.suite.tasks)
  assert results["mean"].keys() == set(idist.SYSTEMS)
  for system in idist.SYSTEMS:
    assert system in table
    assert 0 <= results["mean"][system] <= 1
  for name, r in results["tasks"].items():
    assert name in table
    assert {s: r["systems"][s]["n"] for s in idist.SYSTEMS} == dict.fromkeys(
        idist.SYSTEMS, c.suite.n_test)
    assert 0 <= r["teacher_train_exact_match"] <= 1
    losses = r["train_losses"]
    assert losses["distill"]["after"]["kl"] > 0  # the teacher differs from the student
    # SFT's loss starts near log V on a random model and falls in 2 steps at this lr
    assert losses["sft_gold"]["after"]["ce"] < losses["sft_gold"]["before"]["ce"]
    teacher_data = read_jsonl(os.path.join(workdir, name, "train_teacher.jsonl"))
    gold = read_jsonl(os.path.join(workdir, name, "train_gold.jsonl"))
    assert [e.query for e in teacher_data] == [e.query for e in gold]
    assert all(e.response == f" {e.meta['answer_teacher']}\n" for e in teacher_data)
    for kind in idist.TRAININGS:
      assert os.path.exists(os.path.join(workdir, name, kind, "lora", "adapter.safetensors"))
  before = results["tasks"]["antonym"]["systems"]["student before"]
  assert before["exact_match"] == 0.0  # a random model does not know antonyms
  with open(os.path.join(workdir, "predictions.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) == len(c.suite.tasks) * len(idist.SYSTEMS) * c.suite.n_test
  assert {"task", "system", "query", "answer", "prediction", "exact_match"} <= rows[0].keys()
  assert os.listdir(tmp_path / "compiled")  # the cache was used


def test_bad_config_fails_fast(model):
  c = _tiny_config(model)
  c.suite.tasks = ("first_word", "no_such_task")
  with pytest.raises(ConfigError, match="suite.tasks.*no_such_task"):
    idist.validate(c)
  c = _tiny_config(model)
  c.distill.responses = "sampled"
  with pytest.raises(ConfigError, match="distill.responses"):
    idist.validate(c)
  c = _tiny_config(model)
  c.suite.n_train = 10_000
  with pytest.raises(ConfigError, match="suite.n_train"):
    idist.validate(c)
  proc = subprocess.run([sys.executable, "-m", "launch.run",
                         "--config=configs/instruction_distill.py:tiny", "--workdir=/tmp/never",
                         f"--config.model.path={model}", "--config.suite.k=-1"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode != 0 and "config.suite.k" in proc.stderr, proc.stderr
  assert "Traceback" not in proc.stderr


def test_prompts_that_do_not_fit_fail_with_the_field_to_raise(model):
  from rd.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  c = _tiny_config(model)
  c.data.teacher_len = 40
  examples = ts.task_examples("antonym", 2)
  with pytest.raises(ConfigError, match="data.teacher_len"):
    idist.check_lengths(c, load_tokenizer(model), examples)
