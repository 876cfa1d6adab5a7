"""`ModelSpec`: every architectural fact the decoder needs, parsed from a Hugging Face config.

One spec type covers Gemma 3 and the Llama family (Llama 3, Qwen2, Qwen3); the differences are
flags (q/k norm, qkv bias, post-norms, (1+w) RMSNorm, scaled embeddings, sliding layers), not
subclasses. GGUF files are turned into the same config dict by `rd.weights.gguf`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

SUPPORTED_MODEL_TYPES = ("gemma3_text", "gemma3", "llama", "qwen2", "qwen3")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class Rope:
  """RoPE for one attention type: base frequency plus optional scaling (HF `rope_parameters`)."""

  theta: float
  rope_type: str = "default"
  factor: float = 1.0
  low_freq_factor: float = 1.0  # llama3 only
  high_freq_factor: float = 4.0  # llama3 only
  original_max_position_embeddings: int = 8192  # llama3 only


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Static description of a decoder-only transformer. Hashable, so it can live in a jit key."""

  family: str  # "gemma3" | "llama" (Llama 3, Qwen2 and Qwen3 are llama-family variants)
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rms_eps: float
  rope_global: Rope
  rope_local: Rope | None = None  # sliding layers' RoPE (Gemma 3); None: same as global
  sliding_window: int | None = None
  sliding_layers: tuple[bool, ...] = ()  # per layer: True when the layer uses the sliding window
  qkv_bias: bool = False
  qk_norm: bool = False
  post_norms: bool = False  # Gemma: norms after attention and after the MLP as well as before
  norm_plus_one: bool = False  # Gemma: RMSNorm scales by (1 + w)
  scale_embeddings: bool = False  # Gemma: embeddings times sqrt(hidden_size)
  activation: str = "silu"  # "silu" | "gelu_tanh"
  query_scale: float = 0.0  # attention logits scale; 0 means head_dim ** -0.5
  tie_embeddings: bool = True
  final_logit_softcap: float | None = None
  max_position_embeddings: int = 8192
  bos_token_id: int | None = None
  eos_token_ids: tuple[int, ...] = ()

  @property
  def attn_scale(self) -> float:
    return self.query_scale or self.head_dim**-0.5

  @property
  def is_sliding(self) -> tuple[bool, ...]:
    return self.sliding_layers or (False,) * self.num_layers

  def flops_per_token(self, context: int = 0) -> float:
    """Forward FLOPs per token: 2 x matmul parameters, plus attention over `context` keys
    (at most the window on sliding layers)."""
    d, h, kv, hd, f = (self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim,
                       self.intermediate_size)
    matmuls = 2 * (d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f)
    keys = sum(min(context, self.sliding_window) if sliding else context
               for sliding in self.is_sliding)
    return self.num_layers * matmuls + 4 * h * hd * keys + 2 * d * self.vocab_size

  def generation_flops(self, prompt_tokens: int, new_tokens: int) -> float:
    """Forward FLOPs of greedy decoding with a KV cache: every fed token (the prompt, then each
    new token but the last) runs the layers over the keys before it and itself; the LM head runs
    once per new token (at the last prompt position and at each fed new token)."""
    head = 2 * self.hidden_size * self.vocab_size
    fed = prompt_tokens + max(new_tokens - 1, 0)
    return sum(self.flops_per_token(i + 1) - head for i in range(fed)) + new_tokens * head


def _rope_from_dict(params: dict[str, Any], field: str) -> Rope:
  rope_type = params.get("rope_type", params.get("type", "default"))
  if rope_type not in SUPPORTED_ROPE_TYPES:
    raise ValueError(f"{field}.rope_type={rope_type!r} is not supported; "
                     f"use one of {SUPPORTED_ROPE_TYPES}")
  known = {f.name for f in dataclasses.fields(Rope)}
  kwargs = {k: v for k, v in params.items() if k in known and k != "rope_type"}
  if "rope_theta" in params:
    kwargs["theta"] = float(params["rope_theta"])
  if "theta" not in kwargs:
    raise ValueError(f"{field} has no rope_theta")
  return Rope(rope_type=rope_type, **kwargs)


def _ropes(cfg: dict[str, Any], default_theta: float) -> tuple[Rope, Rope | None]:
  """Reads transformers v5 `rope_parameters` and the older `rope_theta`/`rope_scaling` keys."""
  params = cfg.get("rope_parameters")
  if params and "full_attention" in params:  # Gemma 3 in transformers v5: one entry per layer type
    return (_rope_from_dict(params["full_attention"], "rope_parameters.full_attention"),
            _rope_from_dict(params["sliding_attention"], "rope_parameters.sliding_attention"))
  if params:
    return _rope_from_dict(params, "rope_parameters"), None
  legacy = dict(cfg.get("rope_scaling") or {})
  legacy["rope_theta"] = cfg.get("rope_theta", default_theta)
  local = cfg.get("rope_local_base_freq")
  return (_rope_from_dict(legacy, "rope_scaling"),
          Rope(theta=float(local)) if local is not None else None)


def _require(cfg: dict[str, Any], key: str, source: str) -> Any:
  if key not in cfg or cfg[key] is None:
    raise ValueError(f"{source}: missing required field {key!r}")
  return cfg[key]


def _token_ids(value: Any) -> tuple[int, ...]:
  if value is None:
    return ()
  return tuple(value) if isinstance(value, (list, tuple)) else (int(value),)


def from_hf_config(cfg: dict[str, Any], source: str = "config") -> ModelSpec:
  """Builds a `ModelSpec` from a Hugging Face `config.json` dict (transformers v4 or v5 keys)."""
  if "text_config" in cfg:  # multimodal Gemma 3 wrapper: the decoder lives in text_config
    cfg = {**cfg["text_config"], "model_type": "gemma3_text"}
  model_type = cfg.get("model_type")
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise ValueError(f"{source}: model_type={model_type!r} is not supported; "
                     f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
  req = lambda key: _require(cfg, key, source)  # noqa: E731
  hidden, heads = int(req("hidden_size")), int(req("num_attention_heads"))
  num_layers = int(req("num_hidden_layers"))
  gemma = model_type.startswith("gemma3")
  rope_global, rope_local = _ropes(cfg, default_theta=1e6 if gemma else 1e4)
  layer_types = cfg.get("layer_types") or ["full_attention"] * num_layers
  if len(layer_types) != num_layers:
    raise ValueError(f"{source}: layer_types has {len(layer_types)} entries, "
                     f"num_hidden_layers is {num_layers}")
  sliding = tuple(t == "sliding_attention" for t in layer_types)
  window = cfg.get("sliding_window") if any(sliding) else None
  head_dim = int(cfg.get("head_dim") or hidden // heads)
  common = dict(
      vocab_size=int(req("vocab_size")), hidden_size=hidden,
      intermediate_size=int(req("intermediate_size")), num_layers=num_layers,
      num_heads=heads, num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
      head_dim=head_dim, rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
      rope_global=rope_global, rope_local=rope_local,
      sliding_window=int(window) if window else None, sliding_layers=sliding if window else (),
      tie_embeddings=bool(cfg.get("tie_word_embeddings", gemma)),
      max_position_embeddings=int(cfg.get("max_position_embeddings", 8192)),
      bos_token_id=cfg.get("bos_token_id"), eos_token_ids=_token_ids(cfg.get("eos_token_id")))
  if gemma:
    common["rope_local"] = rope_local or Rope(theta=10000.0)  # Gemma 3's sliding-layer default
    return ModelSpec(
        family="gemma3", qk_norm=True, post_norms=True, norm_plus_one=True,
        scale_embeddings=True, activation="gelu_tanh",
        qkv_bias=bool(cfg.get("attention_bias", False)),
        query_scale=float(cfg.get("query_pre_attn_scalar") or head_dim) ** -0.5,
        final_logit_softcap=cfg.get("final_logit_softcapping"), **common)
  if cfg.get("attn_logit_softcapping") or cfg.get("mlp_bias"):
    raise ValueError(f"{source}: attn_logit_softcapping / mlp_bias are not supported")
  return ModelSpec(
      family="llama", qk_norm=model_type == "qwen3",
      qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)), **common)


def load_hf_config(model_dir: str) -> ModelSpec:
  """Reads `<model_dir>/config.json` into a `ModelSpec`, with errors that name the file."""
  path = os.path.join(model_dir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: a model directory needs a config.json")
  with open(path) as f:
    try:
      cfg = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from e
  return from_hf_config(cfg, source=path)


def _rope_to_dict(rope: Rope) -> dict[str, Any]:
  out: dict[str, Any] = {"rope_type": rope.rope_type, "rope_theta": rope.theta}
  if rope.rope_type != "default":
    out["factor"] = rope.factor
  if rope.rope_type == "llama3":
    out.update(low_freq_factor=rope.low_freq_factor, high_freq_factor=rope.high_freq_factor,
               original_max_position_embeddings=rope.original_max_position_embeddings)
  return out


def to_hf_config(spec: ModelSpec) -> dict[str, Any]:
  """The transformers v5 `config.json` dict that `from_hf_config` maps back to `spec`."""
  gemma = spec.family == "gemma3"
  model_type = "gemma3_text" if gemma else ("qwen3" if spec.qk_norm else
                                            "qwen2" if spec.qkv_bias else "llama")
  arch = {"gemma3_text": "Gemma3ForCausalLM", "qwen3": "Qwen3ForCausalLM",
          "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[model_type]
  cfg: dict[str, Any] = dict(
      architectures=[arch], model_type=model_type, vocab_size=spec.vocab_size,
      hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
      num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
      num_key_value_heads=spec.num_kv_heads, head_dim=spec.head_dim, rms_norm_eps=spec.rms_eps,
      tie_word_embeddings=spec.tie_embeddings,
      max_position_embeddings=spec.max_position_embeddings, bos_token_id=spec.bos_token_id,
      eos_token_id=list(spec.eos_token_ids) if len(spec.eos_token_ids) != 1
      else spec.eos_token_ids[0],
      layer_types=["sliding_attention" if s else "full_attention" for s in spec.is_sliding],
      sliding_window=spec.sliding_window, dtype="float32")
  if gemma:
    cfg.update(hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=round(spec.attn_scale**-2),
               attention_bias=spec.qkv_bias, final_logit_softcapping=spec.final_logit_softcap,
               rope_parameters={"full_attention": _rope_to_dict(spec.rope_global),
                                "sliding_attention": _rope_to_dict(spec.rope_local
                                                                   or spec.rope_global)})
  else:
    cfg.update(hidden_act="silu", rope_parameters=_rope_to_dict(spec.rope_global),
               attention_bias=spec.qkv_bias and model_type != "qwen2",
               use_sliding_window=spec.sliding_window is not None)
  return cfg
