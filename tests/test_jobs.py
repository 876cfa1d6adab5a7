"""Every method's job through the one launcher (`launch/run.py`), on its tiny preset:

* 2 local JAX processes (`launch.local_multiprocess`) give the same `results.json` figures and
  the same predictions as 1 process;
* a SIGTERM during a training leaves a checkpoint and exit code 0, and rerunning the same
  command finishes with the results of an uninterrupted run.

Each run is a subprocess (XLA_FLAGS and jax.distributed must be set before JAX starts). The
prompt-distillation job (the README's main job) runs on 2 processes in the fast suite; the rest
is slow (about 3 minutes a job on 2 cores): `pytest -m slow tests/test_jobs.py`.
"""

import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from launch import local_multiprocess
from rd.data.examples import Example, write_jsonl
from tests.fixtures import make_facts, make_model_dir, make_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IGNORED = {"seconds", "devices", "processes", "config"}  # what may differ between runs
RTOL = 1e-4  # float sums reduced in another order over 2 processes


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  d = tmp_path_factory.mktemp("jobs")
  make_facts(str(d), prefix="facts_")
  tasks = [Example(context=f"Rule: always answer {words}.", query=x, response=f" {words}",
                   meta={"task": name, "split": split, "answer": words})
           for name, split, words in (("cat", "seen", "the cat sat"),
                                      ("dog", "seen", "the lazy dog"),
                                      ("mat", "unseen", "on the mat"))
           for x in ("two plus two", "the rule", "four dogs", "a question", "brown mat",
                     "lazy answer", "the quick fox", "sat on two", "rule four", "cat and dog",
                     "the answer", "mat rule")]
  write_jsonl(str(d / "tasks.jsonl"), tasks)
  (d / "text.txt").write_text(" ".join(["the quick brown fox jumps over the lazy dog"] * 40))
  return {"dir": d, "model": make_model_dir(str(d / "model"), sharpness=8.0),
          "task": make_task(str(d / "task.jsonl"), 16)}


def job_args(job: str, inputs) -> list[str]:
  """The launcher's flags for `job` on its tiny preset; trainings long enough (tens of steps)
  for a SIGTERM to land inside one."""
  d, model = inputs["dir"], f"--config.model.path={inputs['model']}"
  return {
      "distill": ["--config=configs/distill.py:tiny", model,
                  f"--config.data.train={inputs['task']}", "--config.train.steps=30"],
      "prompt_distill": ["--config=configs/prompt_distill.py:tiny", model,
                         f"--config.data.train={d}/facts_train.jsonl",
                         f"--config.data.eval={d}/facts_test.jsonl",
                         f"--config.evaluation.documents={d}/facts_documents.jsonl",
                         "--config.train.steps=30"],
      "instruction_distill": ["--config=configs/instruction_distill.py:tiny", model,
                              "--config.train.steps=30"],
      "rule_distill": ["--config=configs/rule_distill.py:tiny", model,
                       "--config.compile_cache=", "--config.rule.max_steps=20",
                       "--config.rule.epochs=20"],
      "composed_distill": ["--config=configs/composed_distill.py:tiny", model,
                           "--config.composed.forms=('simultaneous',)",
                           "--config.composed.epochs=8"],
      "scratchpad_distill": ["--config=configs/scratchpad_distill.py:tiny",
                             "--config.scratchpad.steps=40"],
      "tagi": ["--config=configs/tagi.py:tiny", model, f"--config.tasks.source={d}/tasks.jsonl",
               f"--config.stage1.text={d}/text.txt", "--config.data.response_len=12",
               "--config.adapters.steps=20"],
  }[job]


NAMES = ("distill", "prompt_distill", "instruction_distill", "rule_distill", "composed_distill",
         "scratchpad_distill", "tagi")
# The fast suite keeps prompt distillation on 2 processes; SIGTERM in the fast suite is the
# plain job's (tests/test_resume.py). Everything here runs with -m slow.
JOBS = [pytest.param(job, marks=() if job == "prompt_distill" else pytest.mark.slow)
        for job in NAMES]
SLOW_JOBS = [pytest.param(job, marks=pytest.mark.slow) for job in NAMES]


def _run(args: list[str], workdir: str, *, processes: int = 1) -> subprocess.CompletedProcess:
  if processes == 1:
    cmd = [sys.executable, "-m", "launch.run", *args, f"--workdir={workdir}"]
  else:
    cmd = [sys.executable, "-m", "launch.local_multiprocess", f"--num_processes={processes}",
           "--timeout=900", "--", *args, f"--workdir={workdir}"]
  proc = subprocess.run(cmd, cwd=ROOT, env=local_multiprocess.process_env(1),
                        capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
  return proc


def _outputs(workdir: str) -> tuple[dict, list]:
  with open(os.path.join(workdir, "results.json")) as f:
    results = {k: v for k, v in json.load(f).items() if k not in IGNORED}
  with open(os.path.join(workdir, "predictions.jsonl")) as f:
    predictions = [json.loads(line) for line in f]
  return results, predictions


def assert_same(a, b, where="results"):
  """Equal structure and text; numbers equal within RTOL (exactly for ints and bools)."""
  if isinstance(a, dict):
    assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys(), b and b.keys())
    for k in a:
      assert_same(a[k], b[k], f"{where}.{k}")
  elif isinstance(a, list):
    assert isinstance(b, list) and len(a) == len(b), where
    for i, (x, y) in enumerate(zip(a, b)):
      assert_same(x, y, f"{where}[{i}]")
  elif isinstance(a, float) and isinstance(b, float):
    assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-6), (where, a, b)
  else:
    assert a == b, (where, a, b)


_REFERENCES = {}


def reference(job, inputs):
  """The job's uninterrupted 1-process run (once per session)."""
  if job not in _REFERENCES:
    workdir = str(inputs["dir"] / f"{job}_one")
    _run(job_args(job, inputs), workdir)
    _REFERENCES[job] = _outputs(workdir)
  return _REFERENCES[job]


@pytest.mark.parametrize("job", JOBS)
def test_two_processes_give_the_results_of_one(job, inputs):
  results, predictions = reference(job, inputs)
  workdir = str(inputs["dir"] / f"{job}_two")
  _run(job_args(job, inputs), workdir, processes=2)
  two_results, two_predictions = _outputs(workdir)
  assert_same(results, two_results)
  assert_same(predictions, two_predictions, "predictions")


def _training_started(workdir: str) -> bool:
  """A training has written its step-0 eval losses (its loop is about to start)."""
  for path in glob.glob(os.path.join(workdir, "**", "metrics.jsonl"), recursive=True):
    with open(path) as f:
      if f.read().strip():
        return True
  return False


@pytest.mark.parametrize("job", SLOW_JOBS)
def test_sigterm_in_a_training_exits_zero_and_the_rerun_finishes_the_same(job, inputs):
  results, predictions = reference(job, inputs)
  workdir = str(inputs["dir"] / f"{job}_sigterm")
  args = [sys.executable, "-m", "launch.run", *job_args(job, inputs), f"--workdir={workdir}"]
  proc = subprocess.Popen(args, cwd=ROOT, env=local_multiprocess.process_env(1),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.monotonic() + 600
  while not _training_started(workdir) and proc.poll() is None:
    assert time.monotonic() < deadline, "no training started"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-6000:]
  assert "preempted" in out, out[-3000:]
  assert glob.glob(os.path.join(workdir, "**", "checkpoints", "[0-9]*"), recursive=True), out
  assert not os.path.exists(os.path.join(workdir, "results.json"))  # it stopped, unfinished
  _run(job_args(job, inputs)[:], workdir)  # the same command again
  again_results, again_predictions = _outputs(workdir)
  assert_same(results, again_results)
  assert_same(predictions, again_predictions, "predictions")
