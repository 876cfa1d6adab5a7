"""GGUF checkpoints in the Hugging Face convention, so the rest of rd only knows HF names.

`read_gguf_config` turns GGUF metadata into a transformers-v5 `config.json` dict and
`read_gguf_tensors` gives the weights under HF names, in torch layout ([out, in] for linears),
dequantized to float32 one tensor at a time.

llama.cpp's converter (convert_hf_to_gguf.py) changes two things that are undone here, exactly
as transformers' own GGUF loader does (modeling_gguf_pytorch_utils.py):
  * Gemma 3: every `*norm.weight` is stored as w + 1 (Gemma's RMSNorm scales by 1 + w);
  * llama arch: q/k projection rows are permuted for llama.cpp's interleaved RoPE.
Qwen2/Qwen3 use llama.cpp's "neox" RoPE, which matches HF, so their q/k are stored unpermuted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from rd.weights.gguf_file import GGUFFile

# GGUF `general.architecture` -> (HF model_type, HF class).
_ARCHS = {
    "gemma3": ("gemma3_text", "Gemma3ForCausalLM"),
    "llama": ("llama", "LlamaForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
}
SUPPORTED_ARCHITECTURES = tuple(_ARCHS)

_TOP_LEVEL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# Per-block GGUF part -> HF module path (the same table gguf-py's TensorNameMap encodes).
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_norm": "post_attention_layernorm",  # llama family: the norm before the MLP
}
# Gemma 3 has four norms per block, so `ffn_norm` is the *pre*-feed-forward one there.
_GEMMA3_BLOCK_NAMES = {
    **_BLOCK_NAMES,
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
# Tensors that are not weights: llama.cpp's precomputed Llama 3 RoPE factors (read into config).
_NOT_WEIGHTS = {"rope_freqs.weight"}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")

# Gemma 3 interleaves 5 sliding-window layers with 1 global one (llama.cpp: set_swa_pattern(6)).
_GEMMA3_SLIDING_PERIOD = 6
_GEMMA3_LOCAL_ROPE_THETA = 10_000.0  # llama.cpp hard-codes this for Gemma 3's sliding layers


def _open(path_or_file: str | os.PathLike | GGUFFile) -> GGUFFile:
  return path_or_file if isinstance(path_or_file, GGUFFile) else GGUFFile(path_or_file)


def _f32(x: Any) -> float:
  """GGUF stores floats as float32: 1e-6 reads back as 9.99999997e-07. Use the shortest decimal
  that maps to the same float32, which is what the original config.json said."""
  return float(str(np.float32(x)))


def _architecture(f: GGUFFile) -> str:
  arch = f.metadata.get("general.architecture")
  if arch not in _ARCHS:
    raise ValueError(f"{f.path}: GGUF architecture {arch!r} is not supported; "
                     f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
  return arch


def read_gguf_config(path_or_file: str | os.PathLike | GGUFFile) -> dict[str, Any]:
  """A Hugging Face (transformers v5) `config.json` dict built from GGUF metadata."""
  f = _open(path_or_file)
  arch = _architecture(f)
  md = f.metadata

  def get(key: str, default: Any = None, required: bool = False) -> Any:
    value = md.get(f"{arch}.{key}", default)
    if required and value is None:
      raise ValueError(f"{f.path}: GGUF metadata key {arch}.{key!r} is missing")
    return value

  hidden = int(get("embedding_length", required=True))
  heads = int(get("attention.head_count", required=True))
  layers = int(get("block_count", required=True))
  head_dim = int(get("attention.key_length") or get("rope.dimension_count") or hidden // heads)
  model_type, hf_class = _ARCHS[arch]
  cfg: dict[str, Any] = {
      "model_type": model_type,
      "architectures": [hf_class],
      # The embedding's row count, not the token list: llama.cpp pads or trims the token list
      # to the embedding, and the weights are what must agree with the config.
      "vocab_size": _vocab_size(f),
      "hidden_size": hidden,
      "intermediate_size": int(get("feed_forward_length", required=True)),
      "num_hidden_layers": layers,
      "num_attention_heads": heads,
      "num_key_value_heads": int(get("attention.head_count_kv") or heads),
      "rms_norm_eps": _f32(get("attention.layer_norm_rms_epsilon", required=True)),
      "max_position_embeddings": int(get("context_length", required=True)),
      "tie_word_embeddings": "output.weight" not in f.tensors,
      **_special_token_ids(md),
  }
  if arch != "qwen2":  # Qwen2's HF config has no head_dim: it is always hidden / heads
    cfg["head_dim"] = head_dim
  if arch == "gemma3":
    cfg.update(_gemma3_config(f, get, hidden, heads, layers, head_dim))
  else:
    cfg.update(_llama_family_config(f, arch, get, head_dim))
  return cfg


def _vocab_size(f: GGUFFile) -> int:
  if "token_embd.weight" in f.tensors:
    return f.tensors["token_embd.weight"].shape[0]
  tokens = f.metadata.get("tokenizer.ggml.tokens")
  if tokens is None:
    raise ValueError(f"{f.path}: has neither token_embd.weight nor a token list")
  return len(tokens)


def _special_token_ids(md: dict[str, Any]) -> dict[str, int]:
  keys = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
          "pad_token_id": "padding_token_id"}
  return {hf: int(md[f"tokenizer.ggml.{g}"]) for hf, g in keys.items()
          if f"tokenizer.ggml.{g}" in md}


def _gemma3_config(f: GGUFFile, get, hidden: int, heads: int, layers: int,
                   head_dim: int) -> dict[str, Any]:
  pattern = get("attention.sliding_window_pattern", _GEMMA3_SLIDING_PERIOD)
  if isinstance(pattern, (int, np.integer)):  # a period: every n-th layer is global
    sliding = [(i + 1) % int(pattern) != 0 for i in range(layers)]
  else:  # newer converters write one bool per layer (True: sliding window)
    sliding = [bool(s) for s in pattern]
  full_rope = {"rope_type": "default", "rope_theta": _f32(get("rope.freq_base", 1_000_000.0)),
               **_rope_scaling(f, "gemma3", head_dim)}
  cfg = {
      "hidden_activation": "gelu_pytorch_tanh",
      "sliding_window": int(get("attention.sliding_window", required=True)),
      "layer_types": ["sliding_attention" if s else "full_attention" for s in sliding],
      "rope_parameters": {
          "sliding_attention": {"rope_type": "default", "rope_theta": _f32(
              get("rope.freq_base_swa", _GEMMA3_LOCAL_ROPE_THETA))},
          "full_attention": full_rope,
      },
      # Not in GGUF. llama.cpp scales queries by head_dim, except Gemma 3 27B (62 layers),
      # whose HF config says query_pre_attn_scalar = hidden / heads; do the same.
      "query_pre_attn_scalar": hidden // heads if layers == 62 else head_dim,
      "attention_bias": "blk.0.attn_q.bias" in f.tensors,
  }
  if (softcap := get("final_logit_softcapping")) is not None:
    cfg["final_logit_softcapping"] = _f32(softcap)
  return cfg


def _llama_family_config(f: GGUFFile, arch: str, get, head_dim: int) -> dict[str, Any]:
  cfg = {
      "hidden_act": "silu",
      "rope_parameters": {"rope_type": "default",
                          "rope_theta": _f32(get("rope.freq_base", 10_000.0)),
                          **_rope_scaling(f, arch, head_dim)},
  }
  if arch != "qwen2":  # Qwen2 always has q/k/v biases; the others say so in config
    cfg["attention_bias"] = "blk.0.attn_q.bias" in f.tensors
  if arch == "llama":
    cfg["mlp_bias"] = "blk.0.ffn_up.bias" in f.tensors
  return cfg


def _rope_scaling(f: GGUFFile, arch: str, head_dim: int) -> dict[str, Any]:
  """HF rope_parameters entries for RoPE scaling, or {} when there is none."""
  md = f.metadata
  kind = md.get(f"{arch}.rope.scaling.type")
  factor = md.get(f"{arch}.rope.scaling.factor", md.get(f"{arch}.rope.scale_linear"))
  original = md.get(f"{arch}.rope.scaling.original_context_length")
  if "rope_freqs.weight" in f.tensors:  # Llama 3.1+ ships its scaling as a tensor of factors
    theta = float(md.get(f"{arch}.rope.freq_base", 10_000.0))
    return _llama3_rope_from_factors(f, theta, head_dim, int(original or 8192))
  if kind in (None, "none") and md.get(f"{arch}.rope.scale_linear") is not None:
    kind = "linear"  # the pre-2024 key
  if kind in (None, "none") or factor in (None, 1.0):
    return {}
  params = {"rope_type": str(kind), "factor": _f32(factor)}
  if original:
    params["original_max_position_embeddings"] = int(original)
  return params


def _llama3_rope_from_factors(f: GGUFFile, theta: float, head_dim: int,
                              original: int) -> dict[str, Any]:
  """Recovers HF's llama3 rope_parameters from llama.cpp's `rope_freqs` tensor.

  llama.cpp stores per-frequency divisors instead of the parameters. Every released Llama 3.x
  uses low_freq_factor=1, high_freq_factor=4; recompute the divisors with those (llama.cpp's
  formula) and accept only an exact match, so an unusual model fails loudly, not silently.
  """
  stored = f.tensor("rope_freqs.weight").reshape(-1)
  lo, hi, factor = 1.0, 4.0, _f32(stored.max())
  params = {"rope_type": "llama3", "factor": factor, "low_freq_factor": lo,
            "high_freq_factor": hi, "original_max_position_embeddings": original}
  wavelen = 2 * np.pi * theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
  smooth = (original / wavelen - lo) / (hi - lo)
  mid = 1 / ((1 - smooth) / factor + smooth)
  expected = np.where(wavelen < original / hi, 1.0, np.where(wavelen > original / lo, factor, mid))
  if expected.shape != stored.shape or not np.allclose(expected, stored, rtol=1e-5):
    raise ValueError(f"{f.path}: rope_freqs.weight does not match Llama 3 RoPE scaling with "
                     f"{params}; this GGUF's RoPE scaling is not supported")
  return params


class GGUFTensors(Mapping):
  """HF name -> float32 weight, read and dequantized only when asked for.

  A Mapping, so `dict(read_gguf_tensors(p))` loads everything, while a model builder can fetch
  one tensor at a time and keep peak host memory near one tensor. `shape(name)` is free.
  """

  def __init__(self, f: GGUFFile):
    self.file = f
    self.config = read_gguf_config(f)
    self._arch = _architecture(f)
    self._gguf_names = {_hf_name(n, self._arch, f.path): n
                        for n in f.tensors if n not in _NOT_WEIGHTS}

  def __getitem__(self, hf_name: str) -> np.ndarray:
    gguf_name = self._gguf_names[hf_name]
    return _undo_llama_cpp(self.file.tensor(gguf_name), gguf_name, self._arch, self.config)

  def __iter__(self) -> Iterator[str]:
    return iter(self._gguf_names)

  def __len__(self) -> int:
    return len(self._gguf_names)

  def shape(self, hf_name: str) -> tuple[int, ...]:
    return self.file.tensors[self._gguf_names[hf_name]].shape


def read_gguf_tensors(path_or_file: str | os.PathLike | GGUFFile) -> GGUFTensors:
  """The file's weights as a lazy HF-named mapping (see `GGUFTensors`); `.config` is its config."""
  return GGUFTensors(_open(path_or_file))


def _hf_name(gguf_name: str, arch: str, path: str) -> str:
  if gguf_name in _TOP_LEVEL_NAMES:
    return _TOP_LEVEL_NAMES[gguf_name]
  table = _GEMMA3_BLOCK_NAMES if arch == "gemma3" else _BLOCK_NAMES
  m = _BLOCK_RE.fullmatch(gguf_name)
  if m is None or m[2] not in table:
    # Refuse rather than drop: a silently missing weight gives a quietly wrong model.
    raise ValueError(f"{path}: tensor {gguf_name!r} has no Hugging Face name for arch {arch!r}")
  return f"model.layers.{m[1]}.{table[m[2]]}.{m[3]}"


def _undo_llama_cpp(w: np.ndarray, gguf_name: str, arch: str, cfg: dict[str, Any]) -> np.ndarray:
  if arch == "gemma3" and gguf_name.endswith("norm.weight"):
    return w - np.float32(1.0)
  if arch == "llama" and ".attn_q." in gguf_name:
    return _unpermute_rope_rows(w, cfg["num_attention_heads"])
  if arch == "llama" and ".attn_k." in gguf_name:
    return _unpermute_rope_rows(w, cfg["num_key_value_heads"])
  return w


def _unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverse of llama.cpp's `LlamaModel.permute`: per head, rows (pair, half) -> (half, pair).

  llama.cpp rotates adjacent pairs (x0, x1), HF rotates halves (x0, x_{d/2}); the converter
  reorders each head's rows to match and this puts them back. Works for weights and biases.
  """
  half = w.shape[0] // n_heads // 2
  return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
