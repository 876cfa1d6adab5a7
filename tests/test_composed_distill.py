"""Composed distillation: window capacity, chunks and ensembles, round data, the whole job."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs.composed_distill import get_config
from rd import job as job_lib
from rd.methods.composed import job as cd
from rd import train as train_lib
from rd.config import ConfigError
from rd.tasks import composed_tasks as tasks
from rd.data.examples import Example, read_jsonl
from rd.data.tokenize import Featurizer
from rd.data.templates import Template
from rd.weights import adapter
from tests.fixtures import make_model_dir
from tests.test_data_helpers import tiny_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_window_capacity_is_what_the_pipeline_fits():
  tok = tiny_tokenizer()
  task = tasks.make_task(tasks.TaskConfig(num_items=8))
  texts = [e.context for e in task["examples"]]
  queries = [q.query for q in task["train"] + task["test"]]
  window = cd.Window(tok, tasks.TEACHER_TEMPLATE, 256, 8, queries)
  k = window.capacity(texts)
  assert 1 <= k < len(texts)
  longest = max(queries, key=len)
  featurizer = Featurizer(tok, Template(tasks.TEACHER_TEMPLATE, tasks.STUDENT_TEMPLATE),
                          cd.config_lib.buckets(get_config("tiny")), overflow="error")
  # k examples with the longest question fit the engine's teacher sequence without a cut ...
  fitting = Example(cd.join(texts[:k]), longest, " Falcon\n")
  assert len(featurizer(fitting).teacher[0]) <= 256
  assert window.tokens(texts[:k]) <= 256 < window.tokens(texts[:k + 1])
  assert not window.fits(texts[:k + 1])


def test_chunks_partition_and_ensembles():
  rng = np.random.default_rng(0)
  chunks = cd.random_chunks(11, 3, rng)
  assert len(chunks) == 4 and all(1 <= len(ch) <= 3 for ch in chunks)
  assert sorted(i for ch in chunks for i in ch) == list(range(11))
  contexts = cd.ensemble_contexts(11, 3, 0, "partition", rng)
  assert sorted(i for ch in contexts for i in ch) == list(range(11)) and len(contexts) == 4
  contexts = cd.ensemble_contexts(11, 3, 2, "random", rng)
  assert len(contexts) == 2 and all(len(set(ch)) == 3 for ch in contexts)
  assert cd.ensemble_contexts(11, 3, 0, "partition", rng) != contexts  # fresh per question


def test_round_sets_sequential_and_recursive():
  task = tasks.make_task(tasks.TaskConfig(num_items=6, train_per_item=1))
  texts = [e.context for e in task["examples"]]
  chunks = [[4, 0], [2, 5], [1, 3]]
  seq = cd.round_sets(task["train"], texts, chunks, "sequential")
  rec = cd.round_sets(task["train"], texts, chunks, "recursive")
  for r, chunk in enumerate(chunks):
    context = texts[chunk[0]] + tasks.EXAMPLE_SEPARATOR + texts[chunk[1]]
    assert {q.meta["item"] for q in seq[r]} == set(chunk)
    assert {q.meta["item"] for q in rec[r]} == {i for ch in chunks[:r + 1] for i in ch}
    assert all(q.context == context and not q.contexts for q in seq[r] + rec[r])
    assert len(seq[r]) == 2 * len(chunk)  # the lexical question and one by nationality
  c = get_config("tiny")
  sim = cd.simultaneous_set(task["train"], texts, 2, c, np.random.default_rng(0))
  assert all(len(q.contexts) == 3 and q.context == "" for q in sim)
  for q in sim:  # "partition": exactly one context holds the question's example
    assert sum(texts[q.meta["item"]] in ctx for ctx in q.contexts) == 1


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  # Qwen2: the tiny one compiles faster than the tiny Gemma 3 (2 layers, no sliding window)
  return make_model_dir(str(tmp_path_factory.mktemp("composed") / "model"), family="qwen2",
                        sharpness=8.0)


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """The rounds of a form compile the same programs: with a (fresh) persistent cache each is
  compiled once, as `launch/run.py --compilation_cache` does."""
  previous = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  yield
  jax.config.update("jax_compilation_cache_dir", previous)


def _tiny_config(model_dir):
  c = get_config("tiny")
  c.model.path = model_dir
  return c


@pytest.mark.slow  # ~70 s: every round of every form (the other jobs' end-to-end tests are slow too)
def test_the_whole_job_chains_its_rounds(model, tmp_path, capsys, monkeypatch):
  calls = []
  real_train = train_lib.train

  def spy(c, workdir, **kwargs):
    # what a round starts from must be finished (its LoRA written) when the round starts
    for field in (c.lora.init_from, c.teacher.lora_workdir):
      assert not field or os.path.exists(os.path.join(field, "lora", "adapter.safetensors"))
    init = train_lib.initial_params(c, kwargs["base"]) if c.lora.init_from else None
    relative = lambda path: path and os.path.relpath(path, str(tmp_path / "wd"))  # noqa: E731
    calls.append({"workdir": relative(workdir), "init_from": relative(c.lora.init_from),
                  "teacher": relative(c.teacher.lora_workdir), "steps": c.train.steps,
                  "init": init,
                  "data": read_jsonl(c.data.train)})
    return real_train(c, workdir, **kwargs)

  monkeypatch.setattr(train_lib, "train", spy)
  workdir = str(tmp_path / "wd")
  results = job_lib.run(cd, _tiny_config(model), workdir)
  out = capsys.readouterr().out
  w = results["window"]
  assert w["k"] >= 1 and w["n"] == 8 and w["n"] >= 2 * w["k"] and w["rounds"] >= 2
  rounds = w["rounds"]
  # simultaneous once, sequential R rounds, recursive R - 1 more (round 1 is shared)
  assert len(calls) == 1 + rounds + rounds - 1
  seq = results["trainings"]["sequential"]
  rec = results["trainings"]["recursive"]
  assert rec[0]["workdir"] == seq[0]["workdir"]
  assert seq[0]["init_from"] == "" and rec[0]["teacher_lora"] == ""
  for r in range(1, rounds):
    assert seq[r]["init_from"] == seq[r - 1]["workdir"] and seq[r]["teacher_lora"] == ""
    assert rec[r]["init_from"] == rec[r - 1]["workdir"] == rec[r]["teacher_lora"]
    assert set(seq[r]["items"]) == set(results["chunks"][r])
    assert set(rec[r]["items"]) == {i for ch in results["chunks"][:r + 1] for i in ch}
  by_dir = {call["workdir"]: call for call in calls}
  for log in seq[1:] + rec[1:]:  # each round's student starts as the previous round's LoRA
    call = by_dir[log["workdir"]]
    previous = adapter.load(os.path.join(workdir, log["init_from"]))  # paths: under workdir
    for target, ab in previous.weights.items():
      for m in ("a", "b"):
        np.testing.assert_array_equal(call["init"].weights[target][m], ab[m])
    assert call["teacher"] == (log["init_from"] if "recursive" in log["workdir"] else "")
  simultaneous = by_dir[results["trainings"]["simultaneous"][0]["workdir"]]
  assert all(len(q.contexts) == rounds for q in simultaneous["data"])
  for name in cd.BASELINES + cd.FORMS:
    assert name in out
    r = results["systems"][name]["heldout"]
    assert r["n"] == 8 and 0 <= r["exact_match"] <= r["contains"] <= 1
  for form in cd.FORMS:
    assert results["systems"][form]["train"]["n"] == 8
    assert len(results["systems"][form]["heldout_by_chunk"]) == rounds
  info = results["systems"]
  assert info["oracle"]["relevant_in_prompt"] == 1.0 == info["oracle chunk"]["relevant_in_prompt"]
  assert info["zero-shot"]["examples_in_prompt"] == 0
  assert info["random k"]["examples_in_prompt"] == w["k"]
  assert results["best_in_window"]["system"] in cd.IN_WINDOW
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["systems"].keys() == results["systems"].keys()
  with open(os.path.join(workdir, "predictions.jsonl")) as f:
    assert len(f.readlines()) == 8 * (len(cd.BASELINES) + 2 * len(cd.FORMS))

  # Running again loads every finished training instead of training it again.
  calls.clear()
  again = job_lib.run(cd, _tiny_config(model), workdir)
  assert calls == []
  for form in cd.FORMS:
    assert again["systems"][form] == results["systems"][form]


def test_bad_config_fails_fast(model, tmp_path):
  c = _tiny_config(model)
  c.composed.forms = ("simultaneous", "parallel")
  with pytest.raises(ConfigError, match="composed.forms"):
    cd.validate(c)
  c = _tiny_config(model)
  c.task.num_items = 1000
  with pytest.raises(ConfigError, match="config.task: num_items"):
    cd.validate(c)
  c = _tiny_config(model)
  c.composed.min_ratio = 50.0  # 8 examples are not 50 windows
  with pytest.raises(ConfigError, match="data.teacher_len"):
    job_lib.run(cd, c, str(tmp_path / "never"))
  proc = subprocess.run([sys.executable, "-m", "launch.run",
                         "--config=configs/composed_distill.py:tiny", "--workdir=/tmp/never",
                         f"--config.model.path={model}", "--config.composed.ensemble=all"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode != 0 and "config.composed.ensemble" in proc.stderr, proc.stderr
  assert "Traceback" not in proc.stderr
