"""The loop's two other trainables: the whole model (from-scratch CE training) and a LoRA that
starts from an earlier run's (sequential rounds)."""

import jax
import numpy as np
import pytest

from configs.distill import get_config
from rd import train
from rd.config import ConfigError, validate
from rd.models import apply
from rd.weights import adapter
from rd.weights.load import load_model
from tests.fixtures import make_model_dir, make_task


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("modes")
  return {"model": make_model_dir(str(d / "model"), sharpness=8.0),
          "train": make_task(str(d / "train.jsonl"), 8)}


def _config(files, **train):
  c = get_config("tiny")
  c.model.path, c.data.train = files["model"], files["train"]
  c.data.global_batch = 8
  c.train.update(log_every=5, checkpoint_every=5, **train)
  return c


def _full(files, steps):
  c = _config(files, steps=steps, trainable="full")
  c.loss.update(kl_weight=0.0, ce_weight=1.0)
  c.optim.update(lr=1e-2, warmup_steps=2, end_lr_factor=1.0)  # same schedule at any length
  return c


def test_full_training_learns_writes_a_model_and_resumes_exactly(files, tmp_path):
  result = train.train(_full(files, 30), str(tmp_path / "once"))
  assert result.after["ce"] < 0.5 * result.before["ce"]
  written = load_model(str(tmp_path / "once" / "model"))
  tokens = np.arange(1, 17).reshape(2, 8)
  np.testing.assert_allclose(apply(written, None, tokens).hidden,
                             apply(result.state.params, None, tokens).hidden, atol=1e-5)
  original = load_model(files["model"])  # the model on disk was not trained in place
  assert not np.allclose(apply(original, None, tokens).hidden, apply(written, None, tokens).hidden)

  train.train(_full(files, 15), str(tmp_path / "twice"))  # stops at 15, resumes to 30
  resumed = train.train(_full(files, 30), str(tmp_path / "twice"))
  for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(resumed.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lora_init_from_continues_an_earlier_student(files, tmp_path):
  first = train.train(_config(files, steps=20), str(tmp_path / "round1"))
  c = _config(files, steps=5)
  c.lora.init_from = str(tmp_path / "round1")
  second = train.train(c, str(tmp_path / "round2"))
  assert second.before["kl"] == pytest.approx(first.after["kl"], rel=1e-5)
  assert second.after["kl"] < first.before["kl"]
  assert not np.allclose(adapter.load(str(tmp_path / "round2")).weights["q"]["b"],
                         adapter.load(str(tmp_path / "round1")).weights["q"]["b"])

  c.lora.rank = 2  # a LoRA of another shape cannot be the start
  with pytest.raises(ConfigError, match="lora.init_from.*lora.rank=16"):
    train.train(c, str(tmp_path / "round3"))


@pytest.mark.parametrize("field, value", [
    ("loss.kl_weight", 1.0),  # full training is CE only
    ("train.export_peft", "/tmp/x"),  # and has no LoRA to export
])
def test_full_training_rejects_lora_only_settings(files, field, value):
  c = _full(files, 5)
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match="train.trainable"):
    validate(c)


def test_negative_data_workers_is_rejected(files):
  c = _full(files, 5)
  c.data.workers = -1
  with pytest.raises(ConfigError, match="data.workers"):
    validate(c)
