"""TAGI's hypernetwork (Liao et al., 2024): a task's instruction in, a LoRA for that task out.

An unseen task then costs one hypernetwork call and no instruction tokens at inference:

  embedding = mean over the instruction's tokens of apply(base, None, instruction).hidden
  h         = gelu(rms(embedding) @ W_enc)                                [B, H]
  z[l, t]   = gelu(rms(h + layer_embed[l] + target_embed[t]) @ W_trunk)   [B, L, T, H]
  A[l, t]   = z[l, t] @ W_a[t] / H + a_bias[t][l],   B[l, t] = z[l, t] @ W_b[t] / H + b_bias[t][l]

so one MLP, told which layer and which matrix (q, k, v, o, ...) it writes by learned
embeddings, emits A [B, L, d_in, r] and B [B, L, r, d_out] for every target of every layer: the
per-example `rd.lora.Lora` that `rd.models.apply` takes. The base model is frozen and only
encodes the instruction (under stop_gradient), so the embedding of a fixed instruction can be
computed once (`embed_texts`) and passed in the batch as `instruction_embedding`.

The heads' outputs are divided by H (as in muP's output layers): Adam moves every entry of W_b
by about the learning rate, and H of them add up in each generated entry, so without it the
generated LoRA would move H times faster than a LoRA trained at the same rate (Gemma 3 270M's
stage 1 diverged at lr 1e-3 with H = 256). With it, the hypernetwork's learning rate means
what a LoRA's does.

Initialization: W_b = 0 and b_bias = 0, so every generated B is 0 and the first student equals
the base exactly; a_bias starts as `rd.lora.init`'s A for the same seed, so generated A's start
where per-task LoRAs trained from that seed start (which keeps their parameters comparable).

Parameters are a plain dict pytree (optax and Orbax take it as is); `save` / `load` write it as
`hypernet.safetensors` + `hypernet.json`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from rd import lora as lora_lib
from rd.lora import Lora
from rd.models.decoder import Decoder, apply
from rd.models.spec import ModelSpec

_WEIGHTS, _META = "hypernet.safetensors", "hypernet.json"


@dataclasses.dataclass(frozen=True)
class HypernetConfig:
  hidden: int = 256  # width H of the MLP
  rank: int = 8  # of the LoRA it writes
  alpha: float = 16.0
  targets: tuple[str, ...] = ("q", "k", "v", "o")

  def __post_init__(self):
    object.__setattr__(self, "targets", tuple(self.targets))
    self.lora_config()  # checks targets and rank
    if self.hidden < 1:
      raise ValueError(f"hypernet.hidden must be >= 1, got {self.hidden}")

  def lora_config(self) -> lora_lib.LoraConfig:
    return lora_lib.LoraConfig(rank=self.rank, alpha=self.alpha, targets=self.targets)


def init(spec: ModelSpec, cfg: HypernetConfig, key: jax.Array) -> dict[str, Any]:
  """Fresh parameters; `key` also seeds a_bias exactly as `rd.lora.init(spec, ..., key)`.

  The other random leaves come from numpy, seeded by `key`: XLA on CPU takes seconds to
  compile each shape of jax.random's hash, and these are drawn once."""
  d, h, n_layers, r = spec.hidden_size, cfg.hidden, spec.num_layers, cfg.rank
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())

  def normal(shape, std):
    return jnp.asarray(rng.standard_normal(shape, np.float32) * std)

  start = lora_lib.init(spec, cfg.lora_config(), key)  # A as a per-task LoRA starts
  heads = {}
  for target in cfg.targets:
    d_in, d_out = lora_lib.target_dims(spec, target)
    heads[target] = {
        # Small: the instruction moves A a little around the shared start; B carries the task.
        "a_w": normal((h, d_in * r), 0.1 * math.sqrt(h / d_in)),
        "a_bias": start.weights[target]["a"].reshape(n_layers, d_in * r),
        "b_w": jnp.zeros((h, r * d_out), jnp.float32),
        "b_bias": jnp.zeros((n_layers, r * d_out), jnp.float32)}
  return {"encoder": {"w": normal((d, h), 1 / math.sqrt(d)), "b": jnp.zeros((h,), jnp.float32)},
          "layer_embed": normal((n_layers, h), 1.0),
          "target_embed": normal((len(cfg.targets), h), 1.0),
          "trunk": {"w": normal((h, h), 1 / math.sqrt(h)), "b": jnp.zeros((h,), jnp.float32)},
          "heads": heads}


def num_params(params: dict[str, Any]) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def task_flops(spec: ModelSpec, cfg: HypernetConfig, instruction_tokens: int) -> float:
  """Forward FLOPs of writing one task's LoRA: the base encodes the instruction (no LM head),
  then the MLP runs once per (layer, target)."""
  head = 2 * spec.hidden_size * spec.vocab_size
  encode = sum(spec.flops_per_token(i + 1) - head for i in range(instruction_tokens))
  h, r, cells = cfg.hidden, cfg.rank, spec.num_layers * len(cfg.targets)
  heads = spec.num_layers * sum(2 * h * r * sum(lora_lib.target_dims(spec, t))
                                for t in cfg.targets)
  return encode + 2 * spec.hidden_size * h + cells * 2 * h * h + heads


def _rms(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)


def embed_instructions(base: Decoder, tokens: jax.Array, segment_ids: jax.Array) -> jax.Array:
  """[B, d] fp32: the mean of the frozen base's last hidden states over each instruction's
  tokens (`segment_ids` > 0), under stop_gradient."""
  hidden = apply(base, None, tokens, segment_ids=segment_ids).hidden.astype(jnp.float32)
  mask = (segment_ids > 0).astype(jnp.float32)[..., None]
  pooled = (hidden * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
  return jax.lax.stop_gradient(pooled)


@functools.partial(jax.jit, static_argnums=(2, 3))
def generate(params: dict[str, Any], embedding: jax.Array, spec: ModelSpec,
             cfg: HypernetConfig) -> Lora:
  """The per-example LoRA (leaves [B, L, ...]) for instruction embeddings [B, d]."""
  h = jax.nn.gelu(_rms(embedding.astype(jnp.float32)) @ params["encoder"]["w"]
                  + params["encoder"]["b"])
  z = (h[:, None, None, :] + params["layer_embed"][None, :, None, :]
       + params["target_embed"][None, None, :, :])
  z = jax.nn.gelu(_rms(z) @ params["trunk"]["w"] + params["trunk"]["b"])  # [B, L, T, H]
  batch, n_layers, r, h = embedding.shape[0], spec.num_layers, cfg.rank, cfg.hidden
  weights = {}
  for i, target in enumerate(cfg.targets):
    head, zt = params["heads"][target], z[:, :, i]
    d_in, d_out = lora_lib.target_dims(spec, target)
    a = (zt @ head["a_w"]) / h + head["a_bias"]
    b = (zt @ head["b_w"]) / h + head["b_bias"]
    weights[target] = {"a": a.reshape(batch, n_layers, d_in, r),
                       "b": b.reshape(batch, n_layers, r, d_out)}
  return Lora(weights, scale=cfg.alpha / cfg.rank)


def hypernet_apply(params: dict[str, Any], base: Decoder, batch: dict[str, jax.Array], *,
                   cfg: HypernetConfig) -> Lora:
  """The student's LoRA for a batch: from its precomputed `instruction_embedding` [B, d], or
  by encoding `instruction_tokens` / `instruction_segment_ids` [B, Ti] with the base."""
  if "instruction_embedding" in batch:
    embedding = batch["instruction_embedding"]
  else:
    embedding = embed_instructions(base, batch["instruction_tokens"],
                                   batch["instruction_segment_ids"])
  return generate(params, embedding, base.spec, cfg)


def task_lora(params: dict[str, Any], embedding: jax.Array, spec: ModelSpec,
              cfg: HypernetConfig) -> Lora:
  """The shared LoRA (leaves [L, ...]) of one task, from its instruction embedding [d]."""
  lora = generate(params, embedding[None], spec, cfg)
  return Lora(jax.tree.map(lambda x: x[0], lora.weights), scale=lora.scale)


# ----------------------------------------------------------------------------------------------
# Instruction text -> embeddings, once per distinct text


def instruction_tokens(tokenizer: Any, texts: Sequence[str], length: int) -> dict[str, np.ndarray]:
  """[BOS] + the text's ids, cut to `length` from the right (the instruction comes first) and
  right-padded: {"tokens", "segment_ids"} [N, length] int32."""
  bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
  pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
  tokens = np.full((len(texts), length), pad, np.int32)
  segment_ids = np.zeros((len(texts), length), np.int32)
  for i, text in enumerate(texts):
    ids = (bos + list(tokenizer.encode(text, add_special_tokens=False)))[:length]
    if not ids:
      raise ValueError(f"instruction {i} is empty and the tokenizer has no BOS token")
    tokens[i, :len(ids)], segment_ids[i, :len(ids)] = ids, 1
  return {"tokens": tokens, "segment_ids": segment_ids}


_embed_jit = jax.jit(embed_instructions)


def embed_texts(base: Decoder, tokenizer: Any, texts: Sequence[str], *, length: int,
                batch_size: int = 16) -> np.ndarray:
  """[N, d] float32 instruction embeddings, `batch_size` texts per (one-shape) call."""
  ids = instruction_tokens(tokenizer, texts, length)
  out = []
  for start in range(0, len(texts), batch_size):
    chunk = {k: v[start:start + batch_size] for k, v in ids.items()}
    n = len(chunk["tokens"])
    padded = {k: np.pad(v, ((0, batch_size - n), (0, 0))) for k, v in chunk.items()}
    out.append(np.asarray(_embed_jit(base, padded["tokens"], padded["segment_ids"]))[:n])
  return np.concatenate(out) if out else np.zeros((0, base.spec.hidden_size), np.float32)


# ----------------------------------------------------------------------------------------------
# Files


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for name, value in params.items():
    key = f"{prefix}{name}"
    if isinstance(value, dict):
      out.update(_flat(value, key + "/"))
    else:
      out[key] = np.asarray(jax.device_get(value), np.float32)
  return out


def save(params: dict[str, Any], cfg: HypernetConfig, directory: str) -> None:
  """Writes the parameters and their config (process 0 only)."""
  tensors = _flat(params)
  if jax.process_index() != 0:
    return
  os.makedirs(directory, exist_ok=True)
  save_file(tensors, os.path.join(directory, _WEIGHTS))
  with open(os.path.join(directory, _META), "w") as f:
    json.dump({"format": "rd-hypernet-v1", **dataclasses.asdict(cfg)}, f, indent=2)


def load(directory: str) -> tuple[dict[str, Any], HypernetConfig]:
  """Reads `save`'s files (or those in `<directory>/hypernet`)."""
  if os.path.isdir(os.path.join(directory, "hypernet")):
    directory = os.path.join(directory, "hypernet")
  meta_path = os.path.join(directory, _META)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"{directory} has no {_META}: not a saved rd hypernetwork")
  with open(meta_path) as f:
    meta = json.load(f)
  cfg = HypernetConfig(hidden=meta["hidden"], rank=meta["rank"], alpha=meta["alpha"],
                       targets=tuple(meta["targets"]))
  params: dict[str, Any] = {}
  for key, value in load_file(os.path.join(directory, _WEIGHTS)).items():
    *parents, leaf = key.split("/")
    node = params
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = jnp.asarray(value)
  return params, cfg
