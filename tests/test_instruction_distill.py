"""Instruction internalization: the job end to end on a tiny random model, its data and checks."""

import json
import os
import subprocess
import sys

import pytest

from configs.instruction_distill import get_config
from rd import instruction_distill as idist
from rd.config import ConfigError
from rd.data import task_suite as ts
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


def test_the_whole_job_on_a_tiny_model(model, tmp_path, capsys):
  c = _tiny_config(model)
  workdir = str(tmp_path / "wd")
  results = idist.run(c, workdir)
  table = capsys.readouterr().out
  assert list(results["tasks"]) == list(c.suite.tasks)
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
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["mean"].keys() == set(idist.SYSTEMS)
  with open(os.path.join(workdir, "predictions.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) == len(c.suite.tasks) * len(idist.SYSTEMS) * c.suite.n_test
  assert {"task", "system", "query", "answer", "prediction", "exact_match"} <= rows[0].keys()


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
  proc = subprocess.run([sys.executable, "-m", "launch.instruction_distill",
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
