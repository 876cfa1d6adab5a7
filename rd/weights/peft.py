"""LoRA in and out of the Hugging Face PEFT format, and merged full weights for transformers.

* `save_peft(lora, spec, dir)`: an adapter directory that `peft.PeftModel.from_pretrained`
  loads onto the transformers model (`adapter_config.json` + `adapter_model.safetensors`).
* `load_peft(dir, spec) -> Lora`: the reverse, for a LoRA init or a teacher LoRA.
* `save_merged(base, lora, dir)`: `W + scale * A @ B` folded in, saved as a plain HF model.

PEFT stores, per layer i and module (`q_proj` ... `down_proj`),
`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` [r, d_in] and `lora_B.weight`
[d_out, r] (torch's [out, in]; rd's `a` [L, d_in, r] and `b` [L, r, d_out] are their transposes
stacked over layers). PEFT's update is `(alpha / r) * B @ A` (`alpha / sqrt(r)` with rsLoRA), so
`lora_alpha = scale * r` reproduces rd's `scale`.
"""

from __future__ import annotations

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.flax import load_file
from safetensors.numpy import save_file

from rd import lora as lora_lib
from rd.lora import Lora
from rd.models.spec import ModelSpec
from rd.weights.names import hf_tensor

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"

# rd target -> HF module name (the same in Gemma 3, Llama, Qwen2 and Qwen3)
MODULES = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
           "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
_TARGETS = {m: t for t, m in MODULES.items()}
_KERNEL = {t: ("blocks", "attn" if t in ("q", "k", "v", "o") else "mlp", t, "kernel")
           for t in MODULES}
# Where the text decoder's layers live: CausalLM models (Gemma 3 1B/270M, Llama, Qwen) use
# "model."; Gemma 3's multimodal checkpoints "model.language_model." (as in rd.weights.load).
_PREFIXES = ("model.", "model.language_model.", "language_model.model.")
_KEY = re.compile(r"^base_model\.model\.(?P<prefix>(?:.*\.)?)layers\.(?P<layer>\d+)\."
                  r"(?P<module>(?:self_attn|mlp)\.\w+)\.lora_(?P<ab>[AB])(?:\.[\w-]+)?\.weight$")

# init_lora_weights values that change the base weights too: the adapter alone is not the update.
_MUTATING_INITS = ("pissa", "olora", "corda", "loftq")
# Config fields that must be off: each changes the forward pass or saves more than A and B.
_MUST_BE_OFF = {
    "use_rslora": "rsLoRA (scale alpha/sqrt(r))",
    "use_dora": "DoRA (weight-decomposed LoRA)",
    "lora_bias": "LoRA bias terms",
    "modules_to_save": "fully trained extra modules (modules_to_save)",
    "trainable_token_indices": "trainable token embeddings",
    "layer_replication": "layer replication",
    "use_qalora": "QA-LoRA",
    "use_bdlora": "block-diagonal LoRA",
    "alora_invocation_tokens": "activated LoRA (aLoRA)",
    "target_parameters": "LoRA on nn.Parameters (target_parameters)",
    "arrow_config": "Arrow routing",
    "kasa_config": "KaSA",
    "monteclora_config": "MonteCLoRA",
    "velora_config": "VeLoRA",
}


def _alpha_for(scale: float, rank: int) -> float | int:
  """The `lora_alpha` whose `lora_alpha / rank` (PEFT's scaling, float64) is nearest `scale`.

  Exact for every scale rd makes (alpha / rank); a few floats are no quotient by `rank` at all,
  and for those the scaling PEFT computes is within one ulp.
  """
  alpha = scale * rank
  candidates = [alpha]
  for direction in (np.inf, -np.inf):
    x = alpha
    for _ in range(4):
      x = float(np.nextafter(x, direction))
      candidates.append(x)
  alpha = min(candidates, key=lambda a: (abs(a / rank - scale), abs(a - scale * rank)))
  return int(alpha) if alpha.is_integer() and abs(alpha) < 2**53 else alpha


def save_peft(lora: Lora, spec: ModelSpec, directory: str, *, base_model_name_or_path: str = "",
              prefix: str = "model.") -> None:
  """Writes `lora` as a PEFT LoRA adapter directory (process 0 only).

  prefix: where the decoder layers live in the transformers model ("model." for the
  `*ForCausalLM` classes, "model.language_model." for Gemma 3's multimodal model).
  """
  if lora.per_example:
    raise ValueError("only a shared LoRA can be saved as a PEFT adapter (this one is "
                     "per-example: one adapter per batch row)")
  ranks = {t: int(ab["a"].shape[-1]) for t, ab in lora.weights.items()}
  rank = max(set(ranks.values()), key=list(ranks.values()).count)
  tensors = {}
  for target, ab in lora.weights.items():
    if target not in MODULES:
      raise ValueError(f"LoRA target {target!r} has no PEFT module name; known: {sorted(MODULES)}")
    a = np.asarray(jax.device_get(ab["a"]), np.float32)
    b = np.asarray(jax.device_get(ab["b"]), np.float32)
    d_in, d_out = lora_lib.target_dims(spec, target)
    want_a, want_b = (spec.num_layers, d_in, ranks[target]), (spec.num_layers, ranks[target], d_out)
    if a.shape != want_a or b.shape != want_b:
      raise ValueError(f"LoRA target {target!r}: a {a.shape} / b {b.shape} do not fit the model "
                       f"spec, which implies a {want_a} / b {want_b}")
    module = hf_tensor(_KERNEL[target], spec, prefix).name.removesuffix(".weight")
    for i in range(spec.num_layers):
      name = "base_model.model." + module.format(i=i)
      tensors[f"{name}.lora_A.weight"] = np.ascontiguousarray(a[i].T)  # [r, d_in]
      tensors[f"{name}.lora_B.weight"] = np.ascontiguousarray(b[i].T)  # [d_out, r]
  odd = {MODULES[t]: r for t, r in ranks.items() if r != rank}  # per-module ranks, same scale
  config = {
      "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank,
      "lora_alpha": _alpha_for(lora.scale, rank),
      "rank_pattern": odd, "alpha_pattern": {m: _alpha_for(lora.scale, r) for m, r in odd.items()},
      "target_modules": [MODULES[t] for t in lora_lib.TARGETS if t in lora.weights],
      "bias": "none", "lora_dropout": 0.0, "fan_in_fan_out": False, "use_rslora": False,
      "use_dora": False, "init_lora_weights": True, "inference_mode": True,
      "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None,
      "base_model_name_or_path": base_model_name_or_path or None,
  }
  if jax.process_index() != 0:
    return
  os.makedirs(directory, exist_ok=True)
  save_file(tensors, os.path.join(directory, WEIGHTS), metadata={"format": "pt"})
  with open(os.path.join(directory, CONFIG), "w") as f:
    json.dump(config, f, indent=2)


def _pattern_value(pattern: dict, module_name: str, default):
  """PEFT's rank_pattern/alpha_pattern lookup (peft.utils.other.get_pattern_key)."""
  for key in pattern:
    if re.match(rf"(.*\.)?({key})$", module_name):
      return pattern[key]
  return default


def _read_config(directory: str) -> dict:
  path = os.path.join(directory, CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{directory} has no {CONFIG}: not a PEFT adapter directory")
  with open(path) as f:
    config = json.load(f)
  where = path
  if config.get("peft_type", "LORA") != "LORA":
    raise ValueError(f"{where}: peft_type {config['peft_type']!r}; rd imports only LORA adapters")
  for field, what in _MUST_BE_OFF.items():
    if config.get(field):
      raise ValueError(f"{where}: {field}={config[field]!r}: {what} is not supported; rd's LoRA is "
                       "plain scale * (x @ A) @ B on q/k/v/o/gate/up/down")
  if config.get("bias", "none") != "none":
    raise ValueError(f"{where}: bias={config['bias']!r}: trained biases are not supported "
                     "(need bias='none')")
  init = config.get("init_lora_weights", True)
  if isinstance(init, str) and init.startswith(_MUTATING_INITS):
    raise ValueError(f"{where}: init_lora_weights={init!r} also changes the base weights, so the "
                     "adapter alone is not the update; convert it with PEFT "
                     "(save_pretrained(path_initial_model_for_weight_conversion=...)) first")
  targets = config.get("target_modules")
  if isinstance(targets, (list, tuple)):
    unknown = sorted(m for m in targets if m.rsplit(".", 1)[-1] not in _TARGETS)
    if unknown:
      raise ValueError(f"{where}: target_modules {unknown} have no rd LoRA target; rd adapts "
                       f"{sorted(_TARGETS)}")
  return config


def load_peft(directory: str, spec: ModelSpec) -> Lora:
  """Reads a PEFT LoRA adapter for a model with `spec` into an rd `Lora` (float32).

  Per-module `rank_pattern` entries are fine (each rd target has its own rank); per-layer ranks
  are not (rd stacks a target's layers). Module- or layer-specific `alpha_pattern` scales are
  folded into B, so the returned `scale` is `lora_alpha / r`. Layers left out through
  `layers_to_transform` or `exclude_modules` get a zero update.
  """
  config = _read_config(directory)
  weights_path = os.path.join(directory, WEIGHTS)
  if not os.path.exists(weights_path):
    extra = (" (adapter_model.bin is a pickle: re-save it with safe_serialization=True)"
             if os.path.exists(os.path.join(directory, "adapter_model.bin")) else "")
    raise FileNotFoundError(f"{directory} has no {WEIGHTS}{extra}")
  tensors = load_file(weights_path)  # small, and unlike numpy this reads bfloat16

  found: dict[tuple[str, str], dict[int, str]] = {}  # (target, "A"/"B") -> layer -> tensor name
  for name in tensors:
    m = _KEY.match(name)
    target = _TARGETS.get(m["module"].split(".")[-1]) if m else None
    if m is None or target is None or m["prefix"] not in _PREFIXES:
      raise ValueError(f"{weights_path}: tensor {name!r} is not a LoRA A/B weight of a decoder "
                       f"projection rd can adapt ({', '.join(sorted(_TARGETS))})")
    layer = int(m["layer"])
    if layer >= spec.num_layers:
      raise ValueError(f"{weights_path}: tensor {name!r} is for layer {layer}, but the model has "
                       f"{spec.num_layers} layers; the adapter is for a different model")
    found.setdefault((target, m["ab"]), {})[layer] = name
  if not found:
    raise ValueError(f"{weights_path} holds no LoRA weights")

  partial = config.get("layers_to_transform") is not None or bool(config.get("exclude_modules"))
  r0, alpha0 = config.get("r", 8), config.get("lora_alpha", 8)  # PEFT's defaults
  scale = alpha0 / r0
  rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
  weights = {}
  for target in [t for t in lora_lib.TARGETS if (t, "A") in found or (t, "B") in found]:
    d_in, d_out = lora_lib.target_dims(spec, target)
    a_names, b_names = found.get((target, "A"), {}), found.get((target, "B"), {})
    module = hf_tensor(_KERNEL[target], spec, "model.").name.removesuffix(".weight")
    layers = sorted(set(a_names) | set(b_names))
    ranks, a, b = {}, None, None
    for i in range(spec.num_layers):
      if i not in a_names or i not in b_names:
        if i in a_names or i in b_names or not partial:
          missing = "A" if i not in a_names else "B"
          raise ValueError(f"{weights_path}: no lora_{missing} for {MODULES[target]} in layer {i}"
                           f" (the adapter has tensors for layers {layers})")
        continue
      module_name = module.format(i=i)  # the name PEFT matches rank/alpha patterns against
      r = _pattern_value(rank_pattern, module_name, r0)
      alpha = _pattern_value(alpha_pattern, module_name, alpha0)
      for name, shape in ((a_names[i], (r, d_in)), (b_names[i], (d_out, r))):
        if (got := tuple(tensors[name].shape)) != shape:
          raise ValueError(f"{weights_path}: tensor {name!r} has shape {got}, "
                           f"expected {shape} (rank {r}, d_in {d_in}, d_out {d_out} from the "
                           "model spec and the adapter config)")
      ranks[i] = r
      if a is None:
        a = np.zeros((spec.num_layers, d_in, r), np.float32)
        b = np.zeros((spec.num_layers, r, d_out), np.float32)
      if a.shape[-1] != r:
        raise ValueError(f"{weights_path}: {MODULES[target]} has rank {r} in layer {i} but "
                         f"{a.shape[-1]} in layer {min(ranks)}; rd needs one rank per target "
                         "across layers (rank_pattern per layer is not supported)")
      a[i] = np.asarray(tensors[a_names[i]], np.float32).T
      b[i] = np.asarray(tensors[b_names[i]], np.float32).T * np.float32((alpha / r) / scale)
    if a is None:
      continue
    weights[target] = {"a": jnp.asarray(a), "b": jnp.asarray(b)}
  return Lora(weights, scale=scale)


def save_merged(base, lora: Lora, directory: str) -> None:
  """Writes `base` with `lora` folded into its kernels as a plain HF model directory."""
  from rd.weights.export import save_hf  # pylint: disable=import-outside-toplevel
  save_hf(lora_lib.merge(base, lora), directory)
