"""Tiny random rd models for fast tests (no torch needed)."""

import jax.numpy as jnp
from flax import nnx

from rd.models import Decoder, from_hf_config

CONFIGS = {
    "gemma3": dict(model_type="gemma3_text", vocab_size=97, hidden_size=48, intermediate_size=64,
                   num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                   sliding_window=6, layer_types=["sliding_attention", "full_attention",
                                                  "sliding_attention"], eos_token_id=1),
    "qwen2": dict(model_type="qwen2", vocab_size=97, hidden_size=48, intermediate_size=64,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  tie_word_embeddings=False, eos_token_id=1),
}


def tiny_model(family: str = "gemma3", seed: int = 0, dtype=jnp.float32, scale: float = 1.0):
  """A random Decoder; `scale` > 1 sharpens its logits (less ties for greedy tests)."""
  model = Decoder(from_hf_config(CONFIGS[family]), dtype=dtype, rngs=nnx.Rngs(seed))
  model.embed[...] = model.embed[...] * scale
  return model
