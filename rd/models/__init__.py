"""Decoder-only transformers (Gemma 3, Llama 3, Qwen2, Qwen3) as pure functions."""

from rd.models.decoder import Cache, Decoder, Out, apply, embed, init_cache, lm_logits
from rd.models.spec import ModelSpec, from_hf_config, load_hf_config

__all__ = ["Cache", "Decoder", "ModelSpec", "Out", "apply", "embed", "from_hf_config",
           "init_cache", "lm_logits", "load_hf_config"]
