"""The distillation step. Teacher and student are the same `apply` with different arguments.

teacher = apply(base, teacher_lora, teacher_tokens)   frozen, under stop_gradient
student = apply(base, to_lora(params), student_tokens)  gradients flow into `params` only

Hidden states are gathered at the response rows first; logits exist only chunk by chunk inside
`rd.losses`. Every term is a (sum, count) pair, divided once by its global count, so padding
never enters a mean and the loss is the same however the batch is split across devices.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rd import losses
from rd.lora import Lora
from rd.models.decoder import Cache, Decoder, apply, init_cache, lm_logits


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Weights and settings of the loss terms; a zero weight skips that term's computation."""

  kl_weight: float = 1.0
  divergence: str = "forward_kl"
  temperature: float = 1.0
  teacher_temperature: float = 0.0  # 0: the same as temperature
  ce_weight: float = 0.0  # hard-label CE on the response (SFT, or TAGI's label term)
  hidden_weight: float = 0.0  # rule distillation's hidden-state alignment (beta)
  hidden_layers: tuple[int, ...] = ()
  chunk_size: int = 256
  remat: str = "none"
  # > 0: forward KL to the teacher's top-k tokens per row, renormalized over them
  # (`losses.distill_topk`, whose docstring gives how this changes the objective); 0: the full
  # vocabulary.
  teacher_topk: int = 0


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  lr: float = 1e-3
  warmup_steps: int = 10
  total_steps: int = 100
  end_lr_factor: float = 0.1
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  clip_norm: float = 1.0


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """AdamW with linear warm-up and cosine decay, after global-norm clipping."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.lr, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.total_steps, cfg.warmup_steps + 1), end_value=cfg.lr * cfg.end_lr_factor)
  return optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                     optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay))


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any  # the trainables: a Lora, or a hypernetwork's parameters
  opt_state: Any  # optimizer state for `params` only
  rng: jax.Array  # raw uint32 key data, so checkpoints store a plain array
  nonfinite: jax.Array  # consecutive steps skipped for a non-finite loss or gradient
  skipped: jax.Array  # steps skipped in total


def init_state(params: Any, optimizer: optax.GradientTransformation, seed: int) -> TrainState:
  zero = lambda: jnp.zeros((), jnp.int32)  # noqa: E731  (distinct buffers: the state is donated)
  return TrainState(step=zero(), params=params, opt_state=optimizer.init(params),
                    rng=jax.random.key_data(jax.random.key(seed)), nonfinite=zero(),
                    skipped=zero())


def gather_rows(hidden: jax.Array, rows: jax.Array, row_index: jax.Array | None = None):
  """hidden [..., B', T, d] at rows [B, R] -> [..., B*R, d]. `row_index` [B] picks packed rows."""
  if row_index is not None:
    hidden = jnp.take(hidden, row_index, axis=-3)
  index = jnp.broadcast_to(rows[..., None], (*hidden.shape[:-2], rows.shape[-1], 1))
  picked = jnp.take_along_axis(hidden, index, axis=-2)
  return picked.reshape(*picked.shape[:-3], -1, picked.shape[-1])


def _shared_prefix_cache(base: Decoder, teacher_lora: Lora | None, batch) -> Cache:
  """KV cache of the batch's shared prefixes, one row per example.

  `prefix_tokens/positions/segment_ids` [G, P] hold G distinct contexts (right-padded, segment
  0); `prefix_index` [B] says which one each example continues. Each prefix runs once, then its
  cache rows are copied to the examples that share it; the teacher sequences [B, T] are the
  suffixes, with positions counting on from their prefix's length. Masks go by position and
  segment, so the padding between a short prefix and its suffix is simply never attended.
  """
  tokens = batch["prefix_tokens"]
  empty = init_cache(base.spec, tokens.shape[0], tokens.shape[1] + batch["teacher_tokens"].shape[1],
                     dtype=base.embed[...].dtype)
  cache = apply(base, teacher_lora, tokens, batch["prefix_positions"],
                batch["prefix_segment_ids"], cache=empty).cache
  index = batch["prefix_index"]
  take = lambda x, axis: jnp.take(x, index, axis=axis)  # noqa: E731
  return Cache(jax.tree.map(lambda x: take(x, 1), cache.layers), take(cache.positions, 0),
               take(cache.segment_ids, 0), cache.index)


def teacher_outputs(base: Decoder, teacher_lora: Lora | None, batch, layers=()):
  """The teacher's rows, example-major: {"hidden": [B, R, d] ([B, K, R, d] for a K-context
  ensemble), "captured": [B, C, R, d] (only with `layers`)}, under stop_gradient.

  An ensemble's sequences [B, K, T] run as one batch of B*K; its captured states (for hidden
  alignment) are those of the first context. A batch with `prefix_tokens` runs its shared
  contexts once (`_shared_prefix_cache`). `rd.teacher_cache` stores exactly this.
  """
  tokens = batch["teacher_tokens"]
  b, r = batch["row_mask"].shape
  k = tokens.shape[1] if tokens.ndim == 3 else 1
  flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
  cache = _shared_prefix_cache(base, teacher_lora, batch) if "prefix_tokens" in batch else None
  out = apply(base, teacher_lora, flat(tokens), flat(batch["teacher_positions"]),
              flat(batch["teacher_segment_ids"]), capture=layers, cache=cache)
  rows = flat(batch["teacher_rows"])
  hidden = gather_rows(out.hidden, rows).reshape(b, k, r, -1)
  outputs = {"hidden": hidden if tokens.ndim == 3 else hidden[:, 0]}
  if layers:  # [C, B*K*R, d] -> [B, C, R, d] of the first context
    captured = gather_rows(out.captured, rows).reshape(len(layers), b, k, r, -1)[:, :, 0]
    outputs["captured"] = captured.swapaxes(0, 1)
  return jax.lax.stop_gradient(outputs)


def _teacher(base: Decoder, teacher_lora: Lora | None, batch, layers):
  """Teacher hidden rows [N, d] (or [K, N, d] for an ensemble) and captured rows [C, N, d],
  from a cached batch (`teacher_hidden`, `teacher_captured`) or a fresh forward pass."""
  if "teacher_hidden" in batch:
    outputs = {"hidden": batch["teacher_hidden"], "captured": batch.get("teacher_captured")}
  else:
    outputs = teacher_outputs(base, teacher_lora, batch, layers)
  hidden, captured = outputs["hidden"], outputs.get("captured")
  if hidden.ndim == 4:  # [B, K, R, d] -> [K, B*R, d]
    hidden = hidden.swapaxes(0, 1)
  hidden = hidden.reshape(*hidden.shape[:-3], -1, hidden.shape[-1])
  if layers:  # [B, C, R, d] -> [C, B*R, d]
    captured = captured.swapaxes(0, 1)
    captured = captured.reshape(captured.shape[0], -1, captured.shape[-1])
  return jax.lax.stop_gradient(hidden), jax.lax.stop_gradient(captured) if layers else None


def _student(base: Decoder, lora: Lora | None, batch, layers, remat):
  out = apply(base, lora, batch["student_tokens"], batch["student_positions"],
              batch["student_segment_ids"], capture=layers, remat=remat)
  row_index = batch.get("student_row_index")
  hidden = gather_rows(out.hidden, batch["student_rows"], row_index)
  captured = gather_rows(out.captured, batch["student_rows"], row_index) if layers else None
  return hidden, captured


def loss_terms(base: Decoder, student_lora: Lora | None, teacher_lora: Lora | None, batch,
               cfg: LossConfig) -> dict[str, tuple[jax.Array, jax.Array]]:
  """{term: (sum, count)} for every term with a non-zero weight."""
  layers = cfg.hidden_layers if cfg.hidden_weight else ()
  student_h, student_states = _student(base, student_lora, batch, layers, cfg.remat)
  mask = batch["row_mask"].reshape(-1)
  logits_fn = functools.partial(lm_logits, base)
  terms = {}
  if cfg.kl_weight or cfg.hidden_weight:
    teacher_h, teacher_states = _teacher(base, teacher_lora, batch, layers)
    if cfg.kl_weight and cfg.teacher_topk:
      ids, log_p = losses.teacher_topk(logits_fn, teacher_h, mask, cfg.teacher_topk,
                                       temperature=cfg.teacher_temperature or cfg.temperature,
                                       chunk_size=cfg.chunk_size)
      terms["kl"] = losses.distill_topk(logits_fn, student_h, ids, log_p, mask,
                                        temperature=cfg.temperature, chunk_size=cfg.chunk_size)
    elif cfg.kl_weight:
      terms["kl"] = losses.distill(logits_fn, student_h, teacher_h, mask,
                                   divergence=cfg.divergence, temperature=cfg.temperature,
                                   teacher_temperature=cfg.teacher_temperature or None,
                                   chunk_size=cfg.chunk_size)
    if cfg.hidden_weight:
      terms["hidden"] = losses.hidden_alignment(student_states, teacher_states, mask)
  if cfg.ce_weight:
    terms["ce"] = losses.cross_entropy(logits_fn, student_h, batch["targets"].reshape(-1), mask,
                                       chunk_size=cfg.chunk_size)
  return terms


def weighted_loss(terms, cfg: LossConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
  weights = {"kl": cfg.kl_weight, "hidden": cfg.hidden_weight, "ce": cfg.ce_weight}
  means = {name: s / jnp.maximum(c, 1.0) for name, (s, c) in terms.items()}
  return sum(weights[name] * m for name, m in means.items()), means


def identity_lora(params, batch):
  del batch
  return params


def student_terms(params, base: Decoder, batch, teacher_lora: Lora | None, loss_cfg: LossConfig,
                  to_lora: Callable, full_model: bool):
  """`loss_terms` of the student the trainables define: base + to_lora(params), or, with
  `full_model`, the model `params` itself (no LoRA; cross-entropy only, as config checks)."""
  if full_model:
    return loss_terms(params, None, None, batch, loss_cfg)
  return loss_terms(base, to_lora(params, batch), teacher_lora, batch, loss_cfg)


def apply_update(state: TrainState, objective: Callable, optimizer: optax.GradientTransformation
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update of `state.params` along `objective(params) -> (loss, means)`, the
  step of every trainable (a LoRA, a model, a hypernetwork). A non-finite loss or gradient
  leaves the parameters and the optimizer state unchanged and is counted."""
  (loss, means), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  grad_norm = optax.tree.norm(grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
  new_state = state.replace(
      step=state.step + 1, params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      nonfinite=jnp.where(finite, 0, state.nonfinite + 1),
      skipped=state.skipped + (~finite).astype(jnp.int32))
  metrics = {"loss": loss, "grad_norm": grad_norm, "nonfinite": new_state.nonfinite,
             "skipped": new_state.skipped, **means}
  return new_state, metrics


def train_step(state: TrainState, base: Decoder, batch, teacher_lora: Lora | None = None, *,
               optimizer: optax.GradientTransformation, loss_cfg: LossConfig,
               to_lora: Callable = identity_lora,
               full_model: bool = False) -> tuple[TrainState, dict[str, jax.Array]]:
  """One update of the trainables on the loss terms of `loss_cfg`."""

  def objective(params):
    terms = student_terms(params, base, batch, teacher_lora, loss_cfg, to_lora, full_model)
    return weighted_loss(terms, loss_cfg)

  state, metrics = apply_update(state, objective, optimizer)
  return state, {**metrics, "response_tokens": batch["row_mask"].sum()}


def eval_step(params, base: Decoder, batch, teacher_lora: Lora | None = None, *,
              loss_cfg: LossConfig, to_lora: Callable = identity_lora, full_model: bool = False):
  """(sum, count) of every loss term on one batch, for exact averages over a whole eval set."""
  return student_terms(params, base, batch, teacher_lora, loss_cfg, to_lora, full_model)
