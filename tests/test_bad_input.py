"""Bad checkpoints fail early with one clear error naming the file or field."""

import json
import os
import shutil

import pytest

from rd.weights.load import load_model
from tests import hf_reference


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("qwen2"))
  hf_reference.make_hf_model("qwen2", path)
  return path


def _copy(model_dir, tmp_path):
  target = str(tmp_path / "model")
  shutil.copytree(model_dir, target)
  return target


def _edit_config(path, **changes):
  with open(os.path.join(path, "config.json")) as f:
    cfg = json.load(f)
  cfg.update(changes)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg, f)


def test_missing_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="does-not-exist"):
    load_model(str(tmp_path / "does-not-exist"))


def test_missing_weight_file(model_dir, tmp_path):
  path = _copy(model_dir, tmp_path)
  os.remove(os.path.join(path, "model.safetensors"))
  with pytest.raises(FileNotFoundError, match="no model.safetensors"):
    load_model(path)


def test_missing_config(model_dir, tmp_path):
  path = _copy(model_dir, tmp_path)
  os.remove(os.path.join(path, "config.json"))
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_model(path)


def test_truncated_weight_file(model_dir, tmp_path):
  path = _copy(model_dir, tmp_path)
  weights = os.path.join(path, "model.safetensors")
  with open(weights, "r+b") as f:
    f.truncate(os.path.getsize(weights) // 2)
  with pytest.raises(ValueError, match=r"model.safetensors is truncated"):
    load_model(path)


def test_config_that_does_not_match_the_weights(model_dir, tmp_path):
  path = _copy(model_dir, tmp_path)
  _edit_config(path, intermediate_size=128)
  with pytest.raises(ValueError, match=r"mlp\.\w+_proj.weight' has shape .* config does not match"):
    load_model(path)


def test_config_with_more_layers_than_the_weights(model_dir, tmp_path):
  path = _copy(model_dir, tmp_path)
  _edit_config(path, num_hidden_layers=9, layer_types=None)
  with pytest.raises(ValueError, match=r"model.layers.4.* is missing"):
    load_model(path)


def test_unknown_architecture(model_dir, tmp_path):
  path = _copy(model_dir, tmp_path)
  _edit_config(path, model_type="mamba")
  with pytest.raises(ValueError, match=r"config.json: model_type='mamba' is not supported"):
    load_model(path)


def test_missing_config_field(model_dir, tmp_path):
  path = _copy(model_dir, tmp_path)
  _edit_config(path, hidden_size=None)
  with pytest.raises(ValueError, match=r"missing required field 'hidden_size'"):
    load_model(path)
