"""Distillation losses on response rows, computed chunk by chunk so [N, V] logits never exist.

Every loss takes hidden rows the caller has already gathered (N = batch x response positions,
flattened), a mask [N] (true / 1 = real response token, false / 0 = padding) and a
`logits_fn(h [n, d]) -> fp32 logits [n, V]`; in the model that is
`functools.partial(rd.models.lm_logits, base)`.

Logits are made for `chunk_size` rows at a time inside a `lax.scan`, so memory is
O(chunk_size * V), not O(N * V). Log-softmax, KL and CE are fp32.

Each chunk's gradient w.r.t. its hidden rows is computed in the same pass as its value
(`_rows_with_grad`): the head's logits are [rows, V] (V = 262,144 for Gemma), so a backward pass
that recomputed them would cost one more head matmul and a second round of elementwise work per
chunk, and one that stored them would hold [N, V]. Reverse mode then only multiplies the stored
[N, d] gradient by the cotangent. The head's weights (inside `logits_fn`) are constants in that
pass; a caller who differentiates them still gets their exact gradient, through the
rematerialized scan, at the old cost.

Every loss returns `(sum, count)` over real rows as fp32 scalars, never a mean: callers add both
across devices and micro-batches and divide once by the global count, so padding is never
averaged in. Masked rows are zeroed before any arithmetic, so whatever they contain (even NaN)
changes neither a loss nor a gradient.
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp

LogitsFn = Callable[[jax.Array], jax.Array]
Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd")
_F32 = jnp.float32


# ----------------------------------------------------------------------------- shared machinery


def _real(mask: jax.Array) -> jax.Array:
  """Boolean [N]: which rows are real tokens."""
  return jnp.asarray(mask) > 0


def _zero_masked(x: jax.Array, real: jax.Array) -> jax.Array:
  """x [N, ...] with padding rows set to 0, so their content (even NaN/inf) cannot leak."""
  return jnp.where(real.reshape(real.shape + (1,) * (x.ndim - 1)), x, jnp.zeros((), x.dtype))


def _masked_sum(per_row: jax.Array, real: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sum of per_row over real rows, number of real rows), both fp32 scalars."""
  total = jnp.sum(jnp.where(real, per_row.astype(_F32), 0.0))
  return total, jnp.sum(real, dtype=_F32)


def _map_rows(fn, xs, chunk_size: int):
  """Applies `fn` to row chunks of the pytree `xs` (leading axis N) and returns its per-row
  outputs, concatenated back to [N, ...].

  N is padded with zero rows up to a multiple of the chunk size (those rows are sliced off
  afterwards). The scan body is rematerialized, so if reverse mode does differentiate the scan
  it stores only each chunk's inputs and recomputes the chunk's [chunk, V] logits.
  `prevent_cse=False` is safe (and faster) inside a scan body: XLA cannot CSE the recomputation
  across loop iterations.
  """
  n = jax.tree.leaves(xs)[0].shape[0]
  size = max(1, min(chunk_size, n))  # never pad a small N up to a big chunk
  pad = -n % size

  def to_chunks(x):
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((n + pad) // size, size, *x.shape[1:])

  body = jax.checkpoint(lambda carry, chunk: (carry, fn(chunk)), prevent_cse=False)
  _, ys = jax.lax.scan(body, None, jax.tree.map(to_chunks, xs))
  return jax.tree.map(lambda y: y.reshape(n + pad, *y.shape[2:])[:n], ys)


def _autodiff_chunk(per_row_fn):
  """A `_rows_with_grad` chunk function from `per_row_fn(h_chunk, other_chunk) -> [chunk]`:
  its per-row values and d(masked chunk sum)/d h_chunk, by reverse mode."""
  def chunk_fn(h_c, other_c, real_c):
    def chunk_sum(h_c):
      per_row = per_row_fn(h_c, other_c)
      return jnp.sum(jnp.where(real_c, per_row, 0.0)), per_row

    (_, per_row), grad = jax.value_and_grad(chunk_sum, has_aux=True)(h_c)
    return per_row, grad
  return chunk_fn


def _rows_with_grad(chunk_fn, h: jax.Array, other, real: jax.Array,
                    chunk_size: int) -> tuple[jax.Array, jax.Array]:
  """(sum of per-row values over real rows, count), whose gradient w.r.t. h is computed chunk by
  chunk in the forward pass.

  `chunk_fn(h_chunk, other_chunk, real_chunk) -> (per_row [chunk], d(masked chunk sum)/d
  h_chunk)`, e.g. `_autodiff_chunk(per_row_fn)`; padding rows of h are zeroed first, so
  whatever they hold reaches neither the value nor the gradient. The scan sees h under
  stop_gradient; the result adds sum(grad * (h - stop_gradient(h))), which is 0 in value and has
  exactly `grad` as its gradient w.r.t. h. Only first derivatives w.r.t. h are supported.
  """
  h = _zero_masked(h, real)
  fixed = jax.lax.stop_gradient(h)
  per_row, grad = _map_rows(lambda c: chunk_fn(*c), (fixed, other, real), chunk_size)
  total, count = _masked_sum(per_row, real)
  return total + jnp.sum(grad * (h - fixed), dtype=_F32), count


def _log_softmax(logits: jax.Array, temperature: float) -> jax.Array:
  return jax.nn.log_softmax(logits.astype(_F32) / temperature, axis=-1)


def _teacher_log_probs(logits_fn: LogitsFn, h: jax.Array, temperature: float,
                       teacher_temperature: float | None = None) -> jax.Array:
  """h [c, K, d] -> the teacher's log-probs [c, V], without gradient.

  One teacher (K = 1): log_softmax(logits / teacher_temperature). An ensemble averages the K
  contexts' probabilities, not logits, at `temperature` (logsumexp over K minus log K); a
  different `teacher_temperature` then sharpens or softens that mixture as one distribution
  (p ** (temperature / teacher_temperature), renormalized): a sharp consensus, not a vote of
  sharpened members, in which one confident context is outvoted by K - 1 that lack its example.
  For K = 1 both readings are the same distribution. None: the same as `temperature`.
  """
  c, k, d = h.shape
  logits = logits_fn(h.reshape(c * k, d))
  if k == 1:  # a single teacher: skip the mixture's logsumexp pass over [c, V]
    own = temperature if teacher_temperature is None else teacher_temperature
    return jax.lax.stop_gradient(_log_softmax(logits, own))
  log_p = _log_softmax(logits, temperature).reshape(c, k, -1)
  mixture = jax.nn.logsumexp(log_p, axis=1) - jnp.log(float(k))
  if teacher_temperature is not None:
    mixture = jax.nn.log_softmax(mixture * (temperature / teacher_temperature), axis=-1)
  return jax.lax.stop_gradient(mixture)


def _teacher_rows(teacher_h: jax.Array, student_ndim: int) -> jax.Array:
  """[N, d] or [K, N, d] -> [N, K, d] (rows first, so they chunk like the student's)."""
  if teacher_h.ndim == student_ndim:
    teacher_h = teacher_h[None]
  return jnp.moveaxis(jax.lax.stop_gradient(teacher_h), 0, 1)


def _check_temperature(temperature) -> None:
  if isinstance(temperature, (int, float)) and temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")


# ----------------------------------------------------------------------------- divergences
# Each maps log-probabilities [..., V] to a per-row value [...]; p is the teacher, q the student.


def _kl(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
  """KL(p || q) = sum p (log p - log q). Terms with p == 0 are 0, with no 0 * inf NaN in the
  value or the gradient."""
  p = jnp.exp(log_p)
  diff = jnp.where(p > 0, log_p - log_q, 0.0)
  return jnp.sum(p * diff, axis=-1)


def _forward_kl(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
  """KL(teacher || student): mass-covering; the gradient w.r.t. student logits is q - p."""
  return _kl(log_p, log_q)


def _reverse_kl(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
  """KL(student || teacher): mode-seeking."""
  return _kl(log_q, log_p)


def _jsd(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
  """Generalized JSD with beta = 0.5: 0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2.

  log m is computed stably as logaddexp(log p, log q) - log 2. Bounded by log 2 per token.
  """
  log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
  return 0.5 * _kl(log_p, log_m) + 0.5 * _kl(log_q, log_m)


_PER_TOKEN = {"forward_kl": _forward_kl, "reverse_kl": _reverse_kl, "jsd": _jsd}


# ----------------------------------------------------------------------------- public losses


def distill(logits_fn: LogitsFn, student_h: jax.Array, teacher_h: jax.Array, mask: jax.Array, *,
            divergence: Divergence = "forward_kl", temperature: float = 1.0,
            teacher_temperature: float | None = None,
            chunk_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """Per-token divergence between teacher and student next-token distributions, summed over
  real rows.

  Args:
    logits_fn: h [n, d] -> fp32 logits [n, V]; used for both sides.
    student_h: [N, d] student hidden rows (gradients flow here and into logits_fn's weights).
    teacher_h: [N, d], or [K, N, d] for an ensemble of K teacher contexts whose distribution is
      the average of the K softmax distributions (probabilities averaged, not logits). The
      teacher side is under stop_gradient, including its path through logits_fn's weights.
    mask: [N], nonzero = real response token.
    divergence: "forward_kl" KL(teacher || student), "reverse_kl" KL(student || teacher), or
      "jsd" (generalized JSD, beta = 0.5).
    temperature: both sides' logits are divided by T and each token's divergence is multiplied
      by T**2 (Hinton et al. 2015), which keeps gradient magnitudes comparable across T. A
      Python float or a traced scalar (e.g. annealed); only a Python float is validated > 0.
    teacher_temperature: the teacher side's T, if it differs (None: `temperature`). Below the
      student's it sharpens the targets, so the student learns a distribution peakier than the
      teacher's (as DINO's teacher); the T**2 factor stays the student's. An ensemble's mixture
      (at `temperature`) is sharpened as a whole: p ** (temperature / teacher_temperature).
    chunk_size: rows per chunk; peak memory is about chunk_size * V * (K + few) fp32.

  Returns:
    (sum over real rows, number of real rows), fp32 scalars.
  """
  if divergence not in _PER_TOKEN:
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
  _check_temperature(temperature)
  if teacher_temperature is not None:
    _check_temperature(teacher_temperature)
  if teacher_h.shape[-2:] != student_h.shape:
    raise ValueError(f"teacher_h {teacher_h.shape} must be [N, d] or [K, N, d] with "
                     f"[N, d] = student_h {student_h.shape}")
  per_token = _PER_TOKEN[divergence]
  real = _real(mask)

  def rows(s_h, t_h):
    log_q = _log_softmax(logits_fn(s_h), temperature)
    log_p = _teacher_log_probs(logits_fn, t_h, temperature, teacher_temperature)
    return temperature**2 * per_token(log_p, log_q)

  if divergence == "forward_kl":
    chunk_fn = _forward_kl_chunk(logits_fn, temperature, teacher_temperature)
  else:
    chunk_fn = _autodiff_chunk(rows)
  teacher = _zero_masked(_teacher_rows(teacher_h, student_h.ndim), real)
  return _rows_with_grad(chunk_fn, student_h, teacher, real, chunk_size)


def _forward_kl_chunk(logits_fn: LogitsFn, temperature, teacher_temperature):
  """`distill`'s forward-KL chunk function with the gradient in closed form.

  d(T**2 KL(p || q)) / d(student logits) = T (q - p), so the chunk needs one [c, V] buffer for
  it besides the two log-probs, where reverse mode through log-softmax and the KL keeps five
  [c, V] buffers live at once (~270 MB less for 128 Gemma rows; `docs/performance.md`). The
  logits' own backward (the head matmul, a soft-cap) stays reverse mode.
  """
  def chunk_fn(h_c, t_h, real_c):
    log_p = _teacher_log_probs(logits_fn, t_h, temperature, teacher_temperature)
    logits, logits_vjp = jax.vjp(logits_fn, h_c)
    log_q = _log_softmax(logits, temperature)
    per_row = temperature**2 * _forward_kl(log_p, log_q)
    d_logits = jnp.where(real_c[:, None], temperature * (jnp.exp(log_q) - jnp.exp(log_p)), 0.0)
    (grad,) = logits_vjp(d_logits.astype(logits.dtype))
    return per_row, grad
  return chunk_fn


def teacher_topk(logits_fn: LogitsFn, teacher_h: jax.Array, mask: jax.Array, k: int,
                 temperature: float = 1.0,
                 chunk_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """Cache of the teacher's k most likely tokens per row, for `distill_topk`.

  teacher_h is [N, d] or [K, N, d] (ensemble, probabilities averaged as in `distill`). Returns
  (ids int32 [N, k], log-probs fp32 [N, k]) of the temperature-T teacher distribution (full-vocab
  normalized, i.e. they sum to <= 1 in probability), in decreasing order. Padding rows hold
  ids 0 and log-probs 0. The top-k set of a single teacher does not depend on T; that of an
  ensemble does.
  """
  _check_temperature(temperature)
  real = _real(mask)

  def rows(t_h):
    log_p, ids = jax.lax.top_k(_teacher_log_probs(logits_fn, t_h, temperature), k)
    return ids.astype(jnp.int32), log_p

  teacher = _zero_masked(_teacher_rows(teacher_h, 2), real)
  ids, log_p = _map_rows(rows, teacher, chunk_size)
  return _zero_masked(ids, real), _zero_masked(log_p, real)


def distill_topk(logits_fn: LogitsFn, student_h: jax.Array, teacher_topk_ids: jax.Array,
                 teacher_topk_logprobs: jax.Array, mask: jax.Array, *,
                 temperature: float = 1.0,
                 chunk_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """Forward KL against a cached top-k teacher: sum_k p~_k (log p~_k - log q_k), times T**2.

  How this changes the objective. The teacher's cached top-k probabilities are renormalized to
  sum to 1 over their k tokens (p~ = softmax over k of the cached log-probs); q is the student's
  full-vocabulary softmax at temperature T, read at those k ids. The loss is KL(p~ || q), the KL
  from the truncated, renormalized teacher, whose support is the top-k set:

  * it equals the full forward KL exactly when the teacher's mass outside its top-k is 0 (e.g.
    k = V);
  * it is >= 0 and is 0 only when q = p~, i.e. it pulls the student to put *all* its mass on the
    teacher's top-k (the gradient w.r.t. student logits is q - p~, so every non-top-k logit is
    pushed down). Writing Q_k for the student's mass on the top-k set and q~ = q / Q_k,
    KL(p~ || q) = KL(p~ || q~) - log Q_k;
  * it is neither an upper nor a lower bound of the full KL(p || q) in general (q = p gives
    -log P_k > 0; q = p~ gives 0 < KL(p || p~) = inf). The gap shrinks as the teacher's
    top-k mass P_k -> 1.

  Temperature: `teacher_topk_logprobs` must already be at temperature T (build them with
  `teacher_topk(..., temperature=T)`); `temperature` here softens the student only and scales
  by T**2. The teacher's log-probs are only used up to a per-row constant, so a cache made at
  T = 1 could be re-tempered exactly by dividing by T, but this function does not do that.

  Args:
    teacher_topk_ids: int [N, k] token ids; teacher_topk_logprobs: [N, k] teacher log-probs.
    mask: [N], nonzero = real response token. Other arguments as in `distill`.

  Returns:
    (sum over real rows, number of real rows), fp32 scalars.
  """
  _check_temperature(temperature)
  real = _real(mask)
  ids = _zero_masked(teacher_topk_ids, real).astype(jnp.int32)
  cached = jax.lax.stop_gradient(_zero_masked(teacher_topk_logprobs.astype(_F32), real))
  log_p = jax.nn.log_softmax(cached, axis=-1)  # renormalized over the top-k

  def rows(h, teacher):
    ids_c, log_p_c = teacher
    log_q = jnp.take_along_axis(_log_softmax(logits_fn(h), temperature), ids_c, axis=-1)
    return temperature**2 * _kl(log_p_c, log_q)

  return _rows_with_grad(_autodiff_chunk(rows), student_h, (ids, log_p), real, chunk_size)


def cross_entropy(logits_fn: LogitsFn, h: jax.Array, targets: jax.Array, mask: jax.Array, *,
                  label_smoothing: float = 0.0,
                  chunk_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """Hard-label cross-entropy -log q(target), summed over real rows (no temperature).

  Targets of padding rows are ignored (any value, e.g. -100, is fine). With label_smoothing e
  the target is (1 - e) one-hot + e uniform over V: (1 - e) * nll + e * mean_v(-log q_v).

  Returns:
    (sum over real rows, number of real rows), fp32 scalars.
  """
  real = _real(mask)
  targets = jnp.where(real, targets, 0).astype(jnp.int32)

  def rows(h_c, y):
    log_q = _log_softmax(logits_fn(h_c), 1.0)
    nll = -jnp.take_along_axis(log_q, y[:, None], axis=-1)[:, 0]
    if label_smoothing:
      nll = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(log_q, axis=-1)
    return nll

  return _rows_with_grad(_autodiff_chunk(rows), h, targets, real, chunk_size)


def _l2_normalize(x: jax.Array, eps: float) -> jax.Array:
  """x / sqrt(|x|^2 + eps^2) in fp32: x / |x| for |x| >> eps, and finite gradient at x = 0
  (zeroed padding rows), unlike x / max(|x|, eps) whose norm has a NaN gradient at 0."""
  x = x.astype(_F32)
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps**2)


def hidden_alignment(student_states: jax.Array, teacher_states: jax.Array, mask: jax.Array, *,
                     eps: float = 1e-6) -> tuple[jax.Array, jax.Array]:
  """Rule distillation's hidden-state term: squared error of L2-normalized hidden states.

  Following Yang et al., each row of each chosen layer is L2-normalized in fp32 (the scale of
  hidden states varies wildly across layers; the direction is what is matched), then
  |s_hat - t_hat|^2 is summed over d, over layers and over real rows. No logits, so no chunking.

  Args:
    student_states, teacher_states: [C, N, d], C chosen layers, response rows already gathered.
      The teacher side is under stop_gradient.
    mask: [N], nonzero = real response token.

  Returns:
    (sum, number of real rows * C), fp32 scalars; sum / count is the per-row, per-layer MSE
    (summed over d).
  """
  real = _real(mask)
  keep = lambda x: jnp.where(real[None, :, None], x, jnp.zeros((), x.dtype))  # noqa: E731
  s = _l2_normalize(keep(student_states), eps)
  t = jax.lax.stop_gradient(_l2_normalize(keep(teacher_states), eps))
  per_row = jnp.sum(jnp.square(s - t), axis=-1)  # [C, N]
  total = jnp.sum(jnp.where(real[None], per_row, 0.0))
  return total, jnp.sum(real, dtype=_F32) * student_states.shape[0]
