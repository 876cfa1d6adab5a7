"""Crash and preemption: a SIGKILLed job resumes to bitwise the same LoRA and data order;
SIGTERM leaves a checkpoint and exits 0."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.fixtures import make_model_dir, make_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("resume")
  return {"model": make_model_dir(str(d / "model")), "train": make_task(str(d / "train.jsonl"), 12)}


def _start(files, workdir):
  args = [sys.executable, "-m", "launch.run", "--config=configs/distill.py:tiny",
          f"--workdir={workdir}", f"--config.model.path={files['model']}",
          f"--config.data.train={files['train']}", f"--config.train.steps={STEPS}",
          "--config.train.log_every=1", "--config.train.checkpoint_every=4",
          "--config.data.eval_examples=4"]
  return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)


def _finish(proc):
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]


def _wait_for_checkpoint(workdir, proc, at_least=8):
  """Polls until a finished checkpoint >= `at_least` exists; returns its step."""
  directory = os.path.join(workdir, "checkpoints")
  while proc.poll() is None:
    steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
    if steps and max(steps) >= at_least:
      return max(steps)
    time.sleep(0.02)
  pytest.fail(f"job ended before checkpoint {at_least}: {proc.stderr.read()[-2000:]}")


def _train_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("straight"))
  _finish(_start(files, workdir))
  return workdir


def test_sigkill_then_resume_equals_an_uninterrupted_run(files, uninterrupted, tmp_path):
  workdir = str(tmp_path)
  proc = _start(files, workdir)
  _wait_for_checkpoint(workdir, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(workdir, "lora")), "killed too late: the run finished"
  _finish(_start(files, workdir))  # same command: resumes from the newest complete checkpoint

  a = load_file(os.path.join(uninterrupted, "lora", "adapter.safetensors"))
  b = load_file(os.path.join(workdir, "lora", "adapter.safetensors"))
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name])  # bitwise
  straight, resumed = _train_losses(uninterrupted), _train_losses(workdir)
  for step in range(1, STEPS + 1):  # same batches in the same order, before and after the crash
    assert resumed[step] == straight[step], step


def test_sigterm_saves_and_exits_zero(files, tmp_path):
  workdir = str(tmp_path)
  proc = _start(files, workdir)
  _wait_for_checkpoint(workdir, proc, at_least=4)
  proc.send_signal(signal.SIGTERM)
  _finish(proc)
  stopped = max(_train_losses(workdir))
  assert stopped < STEPS
  assert str(stopped) in os.listdir(os.path.join(workdir, "checkpoints"))
