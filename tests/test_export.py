"""`save_hf` writes a directory that rd and transformers both load to the same model."""

import jax
import numpy as np
import pytest

from rd.models import apply, lm_logits
from rd.weights.export import save_hf
from rd.weights.load import load_model
from tests.tiny import tiny_model

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.mark.parametrize("family", ["gemma3", "qwen2"])
def test_export_round_trips_through_rd_and_transformers(family, tmp_path):
  import torch
  import transformers

  model = tiny_model(family)
  save_hf(model, str(tmp_path))
  again = load_model(str(tmp_path))
  assert again.spec == model.spec
  tokens = np.arange(20).reshape(2, 10)
  hidden = apply(model, None, tokens).hidden
  np.testing.assert_array_equal(apply(again, None, tokens).hidden, hidden)
  reference = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
  with torch.no_grad():
    ref_logits = reference(torch.tensor(tokens)).logits.numpy()
  assert np.abs(np.asarray(lm_logits(model, hidden)) - ref_logits).max() <= 1e-4
