"""PEFT adapters in and out: rd's LoRA logits equal transformers + PEFT (PyTorch) logits.

Every family's tiny HF model is built once per module. Slow: the real Gemma 3 270M
(`python -m pytest -m slow tests/test_peft.py`).
"""

import copy
import json
import os

import jax
import numpy as np
import pytest

from rd import lora as lora_lib
from rd.models import apply, lm_logits
from rd.weights.load import load_model
from rd.weights.peft import MODULES, _alpha_for, load_peft, save_merged, save_peft
from tests import hf_reference

jax.config.update("jax_default_matmul_precision", "highest")

ALL = lora_lib.TARGETS
TOL = 1e-3
MAX_DIFF = {}  # (test, family) -> (max |rd - reference|, max |LoRA - base|), printed with -s


def _random_lora(spec, key, rank=4, alpha=8.0, targets=ALL, ranks=None) -> lora_lib.Lora:
  """Random A and non-zero random B on `targets` (per-target ranks from `ranks`)."""
  weights = {}
  for target, k in zip(targets, jax.random.split(key, len(targets))):
    r = (ranks or {}).get(target, rank)
    d_in, d_out = lora_lib.target_dims(spec, target)
    ka, kb = jax.random.split(k)
    weights[target] = {
        "a": jax.random.normal(ka, (spec.num_layers, d_in, r)) / np.sqrt(d_in),
        "b": jax.random.normal(kb, (spec.num_layers, r, d_out)) * 0.3}
  return lora_lib.Lora(weights, scale=alpha / rank)


@jax.jit
def _forward(base, lora, tokens):
  return lm_logits(base, apply(base, lora, tokens).hidden)


def _rd_logits(base, lora, tokens):
  return np.asarray(_forward(base, lora, tokens))


def _torch_logits(model, tokens):
  import torch

  with torch.no_grad():
    return model(input_ids=torch.tensor(tokens)).logits.numpy()


def _check(name, family, ours, theirs, base_logits):
  diff, effect = float(np.abs(ours - theirs).max()), float(np.abs(ours - base_logits).max())
  MAX_DIFF[(name, family)] = diff, effect
  assert effect > 0.1, f"the LoRA hardly changes the logits ({effect})"
  assert diff <= TOL, (name, family, diff)


@pytest.fixture(scope="module", autouse=True)
def _report():
  yield
  for (name, family), (diff, effect) in sorted(MAX_DIFF.items()):
    print(f"\n{name:>17s} {family:>7s}: max |rd - reference| = {diff:.2e}"
          f" (the LoRA moves logits by up to {effect:.2f})", end="")


@pytest.fixture(scope="module")
def families(tmp_path_factory):
  """family -> (transformers model, rd base, tokens, base logits), built lazily, once."""
  import torch

  torch.set_num_threads(1)
  cache = {}

  def get(family):
    if family not in cache:
      directory = str(tmp_path_factory.mktemp(family))
      hf = hf_reference.make_hf_model(family, directory)
      base = load_model(directory)
      tokens = np.random.default_rng(0).integers(0, base.spec.vocab_size, size=(2, 10))
      cache[family] = (hf, base, tokens, _torch_logits(hf, tokens))
    return cache[family]

  return get


@pytest.mark.parametrize("family", sorted(hf_reference.FAMILIES))
def test_save_peft_loads_in_peft_with_rd_logits(family, families, tmp_path):
  import peft

  hf, base, tokens, base_logits = families(family)
  lora = _random_lora(base.spec, jax.random.key(1))
  ours = _rd_logits(base, lora, tokens)
  save_peft(lora, base.spec, str(tmp_path), base_model_name_or_path="tiny")
  config = json.loads((tmp_path / "adapter_config.json").read_text())
  assert config["lora_alpha"] / config["r"] == lora.scale
  assert sorted(config["target_modules"]) == sorted(MODULES.values())
  model = peft.PeftModel.from_pretrained(copy.deepcopy(hf), str(tmp_path)).eval()
  # every saved tensor was loaded into a LoRA layer (no silently ignored key)
  loaded = {k for k in model.state_dict() if "lora_" in k}
  assert len(loaded) == 2 * len(ALL) * base.spec.num_layers
  _check("save_peft", family, ours, _torch_logits(model, tokens), base_logits)


@pytest.mark.parametrize("family", sorted(hf_reference.FAMILIES))
def test_save_merged_loads_in_transformers_with_rd_logits(family, families, tmp_path):
  import transformers

  _, base, tokens, base_logits = families(family)
  lora = _random_lora(base.spec, jax.random.key(2))
  save_merged(base, lora, str(tmp_path))
  merged = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
  _check("save_merged", family, _rd_logits(base, lora, tokens), _torch_logits(merged, tokens),
         base_logits)


def _peft_adapter(hf, directory, seed=0, **config):
  """A PEFT LoRA made in PyTorch with random non-zero B, saved; returns its logits function."""
  import peft
  import torch

  config = dict(r=4, lora_alpha=8, target_modules=list(MODULES.values())) | config
  model = peft.get_peft_model(copy.deepcopy(hf), peft.LoraConfig(**config)).eval()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "lora_B" in name:
        p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
  model.save_pretrained(directory)
  return model


@pytest.mark.parametrize("family", sorted(hf_reference.FAMILIES))
def test_load_peft_reproduces_peft_logits(family, families, tmp_path):
  hf, base, tokens, base_logits = families(family)
  model = _peft_adapter(hf, str(tmp_path))
  lora = load_peft(str(tmp_path), base.spec)
  assert lora.scale == 2.0 and sorted(lora.weights) == sorted(ALL)
  _check("load_peft", family, _rd_logits(base, lora, tokens), _torch_logits(model, tokens),
         base_logits)


def test_load_peft_with_patterns_and_some_layers(families, tmp_path):
  """Per-module ranks, per-module and per-layer alphas (folded into B), layers_to_transform."""
  hf, base, tokens, base_logits = families("llama")
  model = _peft_adapter(hf, str(tmp_path), seed=3, r=4, lora_alpha=6,
                        target_modules=["q_proj", "v_proj", "down_proj"],
                        rank_pattern={"q_proj": 2}, alpha_pattern={"down_proj": 3,
                                                                   "layers.2.self_attn.v_proj": 1},
                        layers_to_transform=[0, 2, 3])
  lora = load_peft(str(tmp_path), base.spec)
  assert lora.scale == 1.5 and sorted(lora.weights) == ["down", "q", "v"]
  assert lora.weights["q"]["a"].shape == (4, 64, 2)
  assert not np.asarray(lora.weights["v"]["b"][1]).any()  # layer 1 is not adapted
  _check("load_peft+pattern", "llama", _rd_logits(base, lora, tokens),
         _torch_logits(model, tokens), base_logits)


def test_save_peft_with_per_target_ranks(families, tmp_path):
  """Targets of different ranks are written with a rank_pattern/alpha_pattern PEFT honours."""
  import peft

  hf, base, tokens, base_logits = families("llama")  # shapes as in the test above: one compile
  lora = _random_lora(base.spec, jax.random.key(4), rank=4, alpha=6.0,
                      targets=("q", "v", "down"), ranks={"q": 2})
  save_peft(lora, base.spec, str(tmp_path))
  config = json.loads((tmp_path / "adapter_config.json").read_text())
  assert (config["rank_pattern"], config["alpha_pattern"]) == ({"q_proj": 2}, {"q_proj": 3})
  model = peft.PeftModel.from_pretrained(copy.deepcopy(hf), str(tmp_path)).eval()
  _check("save_peft+ranks", "llama", _rd_logits(base, lora, tokens), _torch_logits(model, tokens),
         base_logits)
  again = load_peft(str(tmp_path), base.spec)
  assert again.scale == lora.scale
  for target, ab in lora.weights.items():
    for m in "ab":
      np.testing.assert_array_equal(again.weights[target][m], ab[m])


def test_lora_alpha_gives_the_scale():
  """PEFT's alpha / r is exactly rd's scale when the scale is some alpha / rank (as rd makes it),
  and within one ulp for the few floats that are no quotient by r."""
  for rank in (1, 3, 4, 7, 16, 48, 100, 128):
    for alpha in (1, 2, 3, 6, 8, 16, 32, 0.5, 7.3, 100):
      assert _alpha_for(alpha / rank, rank) / rank == alpha / rank
    for scale in (0.1, 1 / 3, 16 / 7, 3.3, 1e-3):
      assert abs(_alpha_for(scale, rank) / rank - scale) <= np.spacing(scale)


# ------------------------------------------------------------------------------------------
# Unsupported adapters fail with a message that names the problem.

@pytest.fixture
def rd_adapter(families, tmp_path):
  _, base, _, _ = families("gemma3")
  save_peft(_random_lora(base.spec, jax.random.key(5)), base.spec, str(tmp_path))
  return str(tmp_path), base.spec


def _edit_config(directory, **changes):
  path = os.path.join(directory, "adapter_config.json")
  with open(path) as f:
    config = json.load(f)
  with open(path, "w") as f:
    json.dump(config | changes, f)


@pytest.mark.parametrize("changes, match", [
    (dict(use_rslora=True), "use_rslora.*rsLoRA"),
    (dict(use_dora=True), "use_dora.*DoRA"),
    (dict(bias="lora_only"), "bias='lora_only'"),
    (dict(modules_to_save=["lm_head"]), "modules_to_save"),
    (dict(target_modules=["q_proj", "lm_head", "fc1"]), r"\['fc1', 'lm_head'\] have no rd LoRA"),
    (dict(peft_type="IA3"), "peft_type 'IA3'"),
    (dict(init_lora_weights="pissa_niter_4"), "changes the base weights"),
    (dict(r=8), r"self_attn\.q_proj\.lora_A\.weight' has shape \(4, 64\), expected \(8, 64\)"),
    (dict(rank_pattern={"layers.1.mlp.up_proj": 2}), "lora_A.weight' has shape"),
])
def test_load_peft_rejects_unsupported_settings(rd_adapter, changes, match):
  directory, spec = rd_adapter
  _edit_config(directory, **changes)
  with pytest.raises(ValueError, match=match):
    load_peft(directory, spec)


def test_load_peft_rejects_a_mismatched_model(rd_adapter, families):
  directory, _ = rd_adapter
  other = families("llama")[1].spec  # same hidden size, head_dim 16 instead of 32
  with pytest.raises(ValueError, match=r"layers\.0\.self_attn\.q_proj\.lora_B\.weight' has shape "
                                       r"\(128, 4\), expected \(64, 4\)"):
    load_peft(directory, other)


def test_load_peft_rejects_foreign_tensors_and_missing_layers(rd_adapter, tmp_path):
  from safetensors.numpy import load_file, save_file

  directory, spec = rd_adapter
  path = os.path.join(directory, "adapter_model.safetensors")
  tensors = load_file(path)
  save_file(tensors | {"base_model.model.lm_head.lora_A.weight": np.zeros((4, 64), np.float32)},
            path)
  with pytest.raises(ValueError, match="'base_model.model.lm_head.lora_A.weight' is not a LoRA"):
    load_peft(directory, spec)
  del tensors["base_model.model.model.layers.2.mlp.up_proj.lora_B.weight"]
  save_file(tensors, path)
  with pytest.raises(ValueError, match="no lora_B for up_proj in layer 2"):
    load_peft(directory, spec)
  with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
    load_peft(str(tmp_path / "nowhere"), spec)


def test_save_peft_rejects_per_example_and_misfit_loras(families, tmp_path):
  _, base, _, _ = families("gemma3")
  lora = _random_lora(base.spec, jax.random.key(6), targets=("q",))
  with pytest.raises(ValueError, match="per-example"):
    save_peft(lora_lib.broadcast(lora, 2), base.spec, str(tmp_path))
  with pytest.raises(ValueError, match="do not fit the model spec"):
    save_peft(lora, families("llama")[1].spec, str(tmp_path))


# ------------------------------------------------------------------------------------------
# The real Gemma 3 270M (the embedded GGUF), loaded by rd and by transformers.

@pytest.mark.slow
def test_gemma3_270m_peft_export_reproduces_rd_logits(tmp_path):
  os.environ["HF_HUB_OFFLINE"] = "1"
  import peft
  import torch
  import transformers

  from rd.embedded import default_model_path
  from rd.tokenizer import load_tokenizer

  path = default_model_path()
  base = load_model("gemma3-270m")
  ids = np.asarray([load_tokenizer("gemma3-270m").encode("The capital of France is Paris, and "
                                                         "the capital of Italy is")])
  lora = _random_lora(base.spec, jax.random.key(7), rank=8, alpha=16.0)
  lora = lora_lib.Lora(jax.tree.map(lambda x: x * 0.2, lora.weights), scale=lora.scale)
  base_logits = np.asarray(lm_logits(base, apply(base, None, ids).hidden))
  ours = _rd_logits(base, lora, ids)
  save_peft(lora, base.spec, str(tmp_path))
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
  model = peft.PeftModel.from_pretrained(hf, str(tmp_path)).eval()
  theirs = _torch_logits(model, ids)
  _check("gemma3-270m", "gemma3", ours, theirs, base_logits)
  assert (ours[0, -1].argmax() == theirs[0, -1].argmax())
