"""Tiny random Hugging Face models (PyTorch) saved as safetensors: the independent reference."""

from __future__ import annotations

import os

import numpy as np

TINY = dict(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
            initializer_range=0.1,
            num_attention_heads=4, num_key_value_heads=2)

FAMILIES = {
    "gemma3": dict(model_type="gemma3_text", head_dim=32, sliding_window=5, query_pre_attn_scalar=24,
                   layer_types=["sliding_attention", "full_attention", "sliding_attention",
                                "full_attention"],
                   rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                    "full_attention": {"rope_type": "linear", "factor": 2.0,
                                                       "rope_theta": 1000000.0}}),
    "llama": dict(model_type="llama", tie_word_embeddings=False, max_position_embeddings=16384,
                  rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
                                   "rope_theta": 500000.0}),
    "qwen2": dict(model_type="qwen2", tie_word_embeddings=True),
    "qwen3": dict(model_type="qwen3", head_dim=32, tie_word_embeddings=False),
}


def make_hf_model(family: str, directory: str, seed: int = 0):
  """Builds a tiny random transformers model of `family`, saves it, returns it (eval mode)."""
  import torch
  import transformers

  kwargs = {**TINY, **FAMILIES[family]}
  model_type = kwargs.pop("model_type")
  config = transformers.AutoConfig.for_model(model_type, **kwargs)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
  with torch.no_grad():  # random norms and biases, so a wrong formula cannot hide behind 0 or 1
    for name, p in model.named_parameters():
      if "norm" in name or name.endswith("bias"):
        p.copy_(torch.randn_like(p) * 0.3 + (0.0 if "gemma" in model_type or "bias" in name
                                              else 1.0))
  os.makedirs(directory, exist_ok=True)
  model.save_pretrained(directory)
  return model


def hf_forward(model, tokens: np.ndarray, mask: np.ndarray):
  """(logits [B, T, V], hidden_states tuple) from transformers, as numpy."""
  import torch

  with torch.no_grad():
    out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                output_hidden_states=True)
  return out.logits.numpy(), [h.numpy() for h in out.hidden_states]
