"""Where each rd parameter lives in a Hugging Face checkpoint.

rd paths are the attribute paths of `rd.models.Decoder` (e.g. `blocks/attn/q/kernel`); block
parameters are stacked over layers, so one rd parameter gathers `num_layers` HF tensors.
HF linears are stored [out, in]; rd kernels are [in, out].
"""

from __future__ import annotations

from typing import NamedTuple

from rd.models.spec import ModelSpec


class HFTensor(NamedTuple):
  name: str  # HF tensor name; "{i}" stands for the layer index in stacked parameters
  transpose: bool = False


_ATTN_PROJ = {p: f"self_attn.{p}_proj" for p in ("q", "k", "v", "o")}
_MLP_PROJ = {p: f"mlp.{p}_proj" for p in ("gate", "up", "down")}


def _block_name(path: tuple[str, ...], spec: ModelSpec) -> HFTensor:
  norms = {
      "attn_norm": "input_layernorm",
      "attn_post_norm": "post_attention_layernorm",
      # Llama calls its pre-MLP norm "post_attention_layernorm"; Gemma has a real post-norm.
      "mlp_norm": "pre_feedforward_layernorm" if spec.post_norms else "post_attention_layernorm",
      "mlp_post_norm": "post_feedforward_layernorm",
  }
  if path[0] in norms:
    return HFTensor(norms[path[0]] + ".weight")
  if path[0] == "attn" and path[1] in ("q_norm", "k_norm"):
    return HFTensor(f"self_attn.{path[1]}.weight")
  proj = _ATTN_PROJ.get(path[1]) if path[0] == "attn" else _MLP_PROJ.get(path[1])
  if proj is None:
    raise KeyError(f"no Hugging Face name for rd parameter {'/'.join(path)}")
  if path[2] == "kernel":
    return HFTensor(proj + ".weight", transpose=True)
  return HFTensor(proj + ".bias")


def rd_path(key_path) -> tuple[str, ...]:
  """A jax key path into a `Decoder` -> its rd parameter path, e.g. ("blocks", "attn", "q",
  "kernel") (the trailing `value` of an nnx.Param is dropped)."""
  names = tuple(getattr(k, "name", getattr(k, "key", None)) for k in key_path)
  return names[:-1] if names[-1] == "value" else names


def hf_tensor(path: tuple[str, ...], spec: ModelSpec, prefix: str = "model.") -> HFTensor:
  """The HF tensor behind rd parameter `path` (tuple of attribute names)."""
  if path == ("embed",):
    return HFTensor(prefix + "embed_tokens.weight")
  if path == ("lm_head",):
    return HFTensor("lm_head.weight")
  if path == ("final_norm", "scale"):
    return HFTensor(prefix + "norm.weight")
  if path[0] == "blocks":
    inner = _block_name(path[1:], spec)
    return HFTensor(f"{prefix}layers.{{i}}.{inner.name}", inner.transpose)
  raise KeyError(f"no Hugging Face name for rd parameter {'/'.join(path)}")
