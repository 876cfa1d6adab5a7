"""The distillation job: it distills, and bad configs fail fast with one line."""

import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs.distill import get_config
from rd import train
from rd.models import apply
from rd.weights import adapter, peft
from rd.weights.load import load_model
from tests.fixtures import make_model_dir, make_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("distill")
  return {"model": make_model_dir(str(d / "model"), sharpness=8.0),
          "train": make_task(str(d / "train.jsonl"), 8)}


def test_distillation_drives_kl_below_one_percent(files, tmp_path):
  c = get_config("tiny")
  c.model.path, c.data.train = files["model"], files["train"]
  c.data.update(global_batch=8, response_len=16)  # the data's responses take up to 14 tokens
  c.lora.update(rank=8, targets=("q", "k", "v", "o", "gate", "up", "down"))
  c.optim.update(lr=2e-2, warmup_steps=5)
  c.train.update(steps=60, log_every=60, checkpoint_every=1000,
                 export_peft=str(tmp_path / "peft"), export_merged=str(tmp_path / "merged"))
  result = train.train(c, str(tmp_path / "wd"))
  assert result.before["kl"] > 0.1  # the context really changes this model's predictions
  assert result.after["kl"] < 0.01 * result.before["kl"]
  assert os.path.exists(tmp_path / "wd" / "lora" / "adapter.safetensors")
  assert os.path.exists(tmp_path / "wd" / "metrics.jsonl")
  exported = peft.load_peft(str(tmp_path / "peft"), load_model(files["model"]).spec)  # the switch
  saved = adapter.load(str(tmp_path / "wd"))
  assert exported.scale == saved.scale
  for a, b in zip(jax.tree.leaves(exported.weights), jax.tree.leaves(saved.weights)):
    np.testing.assert_array_equal(a, b)
  tokens = np.arange(1, 17).reshape(2, 8)
  merged = apply(load_model(str(tmp_path / "merged")), None, tokens).hidden
  live = apply(load_model(files["model"]), saved, tokens).hidden
  np.testing.assert_allclose(merged, live, atol=1e-4)


def _job(*overrides, files=None):
  args = [sys.executable, "-m", "launch.run", "--config=configs/distill.py:tiny",
          "--workdir=/tmp/rd-never-written", *overrides]
  if files:
    args += [f"--config.model.path={files['model']}", f"--config.data.train={files['train']}"]
  start = time.perf_counter()
  proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
  return proc, time.perf_counter() - start


@pytest.mark.parametrize("override, field", [
    ("--config.optim.lrr=1e-3", "lrr"),  # unknown key
    ("--config.optim.lr=fast", "config.optim.lr"),  # wrong type
    ("--config.model.path=/no/such/model", "config.model.path"),  # missing model
    ("--config.loss.divergence=kl", "config.loss.divergence"),  # bad choice
])
def test_bad_config_fails_fast_with_one_line(files, override, field):
  proc, seconds = _job(override, files=files if "model.path" not in override else None)
  if "model.path" in override:
    proc, seconds = _job(override, f"--config.data.train={files['train']}")
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode != 0 and seconds < 10
  assert len(lines) <= 2 and field in lines[0], proc.stderr  # absl adds a "--helpshort" hint
  assert "Traceback" not in proc.stderr
