"""Chunked losses equal full-vocab references, ignore padding, and keep no [N, V] residual.

Compilation dominates the run time, so every loss is wrapped once, at module level, in a jitted
value-and-grad whose compiled programs (one per shape and static argument) the tests share.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rd import losses

jax.config.update("jax_enable_x64", False)
jax.config.update("jax_default_matmul_precision", "highest")

N, D, V, CHUNK, ENSEMBLE = 37, 16, 50, 8, 3  # N is not a multiple of CHUNK
PADDING_ROWS = [0, 5, 6, N - 1]
TOL = dict(rtol=1e-5, atol=1e-5)


def logits_fn(w, h):
  return jnp.einsum("nd,vd->nv", h, w, preferred_element_type=jnp.float32)


def _data(seed=0, ensemble=False):
  """w [V, D], student s [N, D], teacher t [N, D] or [ENSEMBLE, N, D], mask [N], targets [N].
  (numpy: eager jax ops would each cost a compilation.)"""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(V, D)).astype(np.float32)
  s = rng.normal(size=(N, D)).astype(np.float32)
  t = s + 0.7 * rng.normal(size=((ENSEMBLE,) if ensemble else ()) + (N, D)).astype(np.float32)
  mask = np.ones(N, np.int32)
  mask[PADDING_ROWS] = 0
  return w, s, t, mask, rng.integers(0, V, size=N).astype(np.int32)


def _np_log_softmax(logits):
  logits = logits - logits.max(-1, keepdims=True)
  return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _np_teacher_logp(w, t, temp):
  logp = _np_log_softmax(t.astype(np.float64) @ w.T.astype(np.float64) / temp)
  return np.log(np.exp(logp).mean(0)) if t.ndim == 3 else logp


def _jit_value_and_grad(loss, static=()):
  """jit of loss(w, s, *rest, **kw) -> ((sum, count), (d sum/d w, d sum/d s)). Positional
  arguments (the temperature too) are traced, so T = 1 and T = 2 share one compiled program."""
  def vg(w, s, *rest, **kw):
    return jax.value_and_grad(lambda w, s: loss(w, s, *rest, **kw), (0, 1), has_aux=True)(w, s)
  return jax.jit(vg, static_argnames=static)


# ----------------------------------------------------------------------------- the losses


@functools.partial(_jit_value_and_grad, static=("divergence",))
def distill(w, s, t, mask, temp, teacher_temp=None, divergence="forward_kl"):
  return losses.distill(functools.partial(logits_fn, w), s, t, mask, divergence=divergence,
                        temperature=temp, teacher_temperature=teacher_temp, chunk_size=CHUNK)


@_jit_value_and_grad
def cross_entropy(w, s, y, mask):
  return losses.cross_entropy(functools.partial(logits_fn, w), s, y, mask, chunk_size=CHUNK)


@_jit_value_and_grad
def distill_topk(w, s, ids, logprobs, mask, temp):
  return losses.distill_topk(functools.partial(logits_fn, w), s, ids, logprobs, mask,
                             temperature=temp, chunk_size=CHUNK)


@functools.partial(jax.jit, static_argnames=("k",))
def teacher_topk(w, t, mask, temp, k):
  return losses.teacher_topk(functools.partial(logits_fn, w), t, mask, k, temp, CHUNK)


# ----------------------------------------------------------------------------- references
# Straightforward full-vocab [N, V] versions.


def _ref_teacher_logp(w, t, temp, teacher_temp):
  """The teacher's (or the ensemble's averaged) distribution at temp, then raised to the power
  temp / teacher_temp and renormalized."""
  logp = jax.nn.log_softmax(logits_fn(w, t.reshape(-1, D)) / temp).reshape(*t.shape[:-1], V)
  if t.ndim == 3:  # ensemble: average the probabilities
    logp = jnp.log(jnp.mean(jnp.exp(logp), axis=0))
  p = jnp.exp(logp) ** (temp / teacher_temp)
  return jax.lax.stop_gradient(jnp.log(p / jnp.sum(p, -1, keepdims=True)))


def _kl(p, logp, logq):
  return jnp.sum(p * (logp - logq), -1)


def _ref_per_token(logp, logq, divergence):
  p, q = jnp.exp(logp), jnp.exp(logq)
  if divergence == "forward_kl":
    return _kl(p, logp, logq)
  if divergence == "reverse_kl":
    return _kl(q, logq, logp)
  logm = jnp.log(0.5 * (p + q))
  return 0.5 * _kl(p, logp, logm) + 0.5 * _kl(q, logq, logm)


def _count(mask):
  return jnp.sum(mask).astype(jnp.float32)


@functools.partial(_jit_value_and_grad, static=("divergence",))
def ref_distill(w, s, t, mask, temp, teacher_temp=None, divergence="forward_kl"):
  logq = jax.nn.log_softmax(logits_fn(w, s) / temp)
  logp = _ref_teacher_logp(w, t, temp, temp if teacher_temp is None else teacher_temp)
  per = temp**2 * _ref_per_token(logp, logq, divergence)
  return jnp.sum(per * mask), _count(mask)


@_jit_value_and_grad
def ref_cross_entropy(w, s, y, mask):
  logq = jax.nn.log_softmax(logits_fn(w, s))
  return -jnp.sum(logq[jnp.arange(N), y] * mask), _count(mask)


@_jit_value_and_grad
def ref_renormalized_topk(w, s, ids, logprobs, mask):
  logq = jnp.take_along_axis(jax.nn.log_softmax(logits_fn(w, s)), ids, -1)
  logp = jax.nn.log_softmax(logprobs, -1)
  return jnp.sum(_kl(jnp.exp(logp), logp, logq) * mask), _count(mask)


def _assert_match(got, ref):
  (total, count), grads = jax.device_get(got)
  (ref_total, ref_count), ref_grads = jax.device_get(ref)
  np.testing.assert_allclose(total, ref_total, **TOL)
  assert count == ref_count == N - len(PADDING_ROWS)
  for g, r in zip(grads, ref_grads):
    assert np.abs(r).max() > 1e-3  # the gradient under test is not trivially zero
    np.testing.assert_allclose(g, r, **TOL)


# ----------------------------------------------------------------------------- tests


# (divergence, ensemble): every divergence with one teacher; the K = 3 ensemble (whose code path
# does not depend on the divergence) with the default forward KL.
CASES = [(d, False) for d in losses.DIVERGENCES] + [("forward_kl", True)]
CASE_IDS = [d + ("-ensemble3" if e else "") for d, e in CASES]


@pytest.mark.parametrize("divergence,ensemble", CASES, ids=CASE_IDS)
def test_distill_matches_full_vocab_reference(divergence, ensemble):
  w, s, t, mask, _ = _data(ensemble=ensemble)
  _assert_match(distill(w, s, t, mask, 1.0, divergence=divergence),
                ref_distill(w, s, t, mask, 1.0, divergence=divergence))


@pytest.mark.parametrize("divergence,ensemble", CASES, ids=CASE_IDS)
def test_temperature_is_t_squared_times_softened_divergence(divergence, ensemble):
  w, s, t, mask, _ = _data(seed=1, ensemble=ensemble)
  _assert_match(distill(w, s, t, mask, 2.0, divergence=divergence),
                ref_distill(w, s, t, mask, 2.0, divergence=divergence))


@pytest.mark.parametrize("divergence,ensemble",
                         [("forward_kl", False), ("reverse_kl", False), ("forward_kl", True)],
                         ids=["forward_kl", "reverse_kl", "forward_kl-ensemble3"])
def test_teacher_temperature_applies_to_the_teacher_side_only(divergence, ensemble):
  """A single teacher at its own T; an ensemble's mixture sharpened as one distribution."""
  w, s, t, mask, _ = _data(seed=2, ensemble=ensemble)
  _assert_match(distill(w, s, t, mask, 1.0, 0.5, divergence=divergence),
                ref_distill(w, s, t, mask, 1.0, 0.5, divergence=divergence))


def test_cross_entropy_matches_reference():
  w, s, _, mask, y = _data(seed=2)
  _assert_match(cross_entropy(w, s, y, mask), ref_cross_entropy(w, s, y, mask))


def test_label_smoothing_matches_reference():
  w, s, _, mask, y = _data(seed=2)
  eps = 0.1
  total, _ = jax.jit(lambda w, s: losses.cross_entropy(
      functools.partial(logits_fn, w), s, y, mask, label_smoothing=eps, chunk_size=CHUNK))(w, s)
  target = (1 - eps) * np.eye(V)[y] + eps / V
  ref = -np.sum(np.sum(target * _np_log_softmax(s.astype(np.float64) @ w.T), -1) * mask)
  np.testing.assert_allclose(total, ref, **TOL)


@pytest.mark.parametrize("divergence,ensemble", CASES, ids=CASE_IDS)
def test_divergence_of_identical_distributions_is_zero(divergence, ensemble):
  w, s, _, mask, _ = _data(seed=3)
  t = np.broadcast_to(s, (ENSEMBLE, N, D)) if ensemble else s
  got = distill(w, s, t, mask, 1.0, divergence=divergence)
  (total, count), (_, grad_s) = jax.device_get(got)
  assert abs(float(total)) < 1e-6 * float(count)
  assert np.abs(grad_s).max() < 1e-5


def _scramble_padding(x, mask, seed):
  """x with its padding rows (the N axis: first, or second for [K, N, d]) replaced by junk."""
  x = np.array(x)
  junk = (np.full(x.shape, -100, x.dtype) if x.dtype == np.int32
          else 100 * np.random.default_rng(seed).normal(size=x.shape).astype(x.dtype))
  pad = mask == 0
  pad = pad[None, :, None] if x.ndim == 3 else pad.reshape(pad.shape + (1,) * (x.ndim - 1))
  return np.where(pad, junk, x)


def test_padding_rows_change_no_loss_and_no_gradient():
  w, s, t, mask, y = _data(seed=4, ensemble=True)
  ids, logprobs = teacher_topk(w, t[0], mask, 1.0, k=3)
  clean = (s, t, y, ids, logprobs)
  dirty = [_scramble_padding(x, mask, i) for i, x in enumerate(clean)]
  dirty[0][PADDING_ROWS[0]] = np.nan  # even NaN padding is harmless
  losses_of = {
      "forward_kl_ensemble": lambda s, t, y, ids, lp: distill(w, s, t, mask, 1.0),
      "jsd_T2": lambda s, t, y, ids, lp: distill(w, s, t[0], mask, 2.0, divergence="jsd"),
      "cross_entropy": lambda s, t, y, ids, lp: cross_entropy(w, s, y, mask),
      "topk": lambda s, t, y, ids, lp: distill_topk(w, s, ids, lp, mask, 1.0),
  }
  for name, loss in losses_of.items():
    ((v0, _), g0), ((v1, _), g1) = jax.device_get((loss(*clean), loss(*dirty)))
    np.testing.assert_array_equal(v1, v0, err_msg=name)
    for a, b in zip(g1, g0):
      np.testing.assert_array_equal(a, b, err_msg=name)
    assert np.all(g1[1][PADDING_ROWS] == 0), name


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_topk_with_k_equal_v_is_the_full_forward_kl(temp):
  w, s, t, mask, _ = _data(seed=5)
  ids, logprobs = teacher_topk(w, t, mask, temp, k=V)
  _assert_match(distill_topk(w, s, ids, logprobs, mask, temp), ref_distill(w, s, t, mask, temp))


def test_small_k_is_finite_and_equals_renormalized_reference():
  w, s, t, mask, _ = _data(seed=7)
  ids, logprobs = teacher_topk(w, t, mask, 1.0, k=3)
  got = jax.device_get(distill_topk(w, s, ids, logprobs, mask, 1.0))
  (total, _), grads = got
  assert np.isfinite(total) and total > 0
  assert all(np.all(np.isfinite(g)) for g in grads)
  _assert_match(got, ref_renormalized_topk(w, s, ids, logprobs, mask))


def test_topk_cache_of_ensemble_matches_full_distribution():
  w, _, t, mask, _ = _data(seed=6, ensemble=True)
  ids, logprobs = jax.device_get(teacher_topk(w, t, mask, 1.5, k=3))
  ref_logp = _np_teacher_logp(w, t, 1.5)
  ref_ids = np.argsort(-ref_logp, -1)[:, :3]
  ref_logprobs = np.take_along_axis(ref_logp, ref_ids, -1)
  real = np.asarray(mask) == 1
  assert ids.shape == (N, 3) and ids.dtype == jnp.int32
  np.testing.assert_array_equal(ids[real], ref_ids[real])
  np.testing.assert_allclose(logprobs[real], ref_logprobs[real], **TOL)
  assert np.all(ids[~real] == 0) and np.all(logprobs[~real] == 0)


def test_hidden_alignment_matches_numpy_and_is_zero_for_identical():
  rng = np.random.default_rng(8)
  c = 3
  s = rng.normal(size=(c, N, D)).astype(np.float32)
  t = 5.0 * rng.normal(size=(c, N, D)).astype(np.float32)
  mask = np.ones(N, np.int32)
  mask[PADDING_ROWS] = 0
  s[:, PADDING_ROWS[0]] = 0.0  # a zero padding row must not give a NaN gradient
  real = mask == 1

  def unit(x):
    x = x[:, real].astype(np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
  ref = np.sum((unit(s) - unit(t)) ** 2)
  align = jax.jit(losses.hidden_alignment)
  total, count = jax.device_get(align(s, t, mask))
  np.testing.assert_allclose(total, ref, rtol=1e-5)
  assert count == real.sum() * c
  same, _ = align(s, s, mask)
  assert abs(float(same)) < 1e-6
  grad = np.asarray(jax.jit(jax.grad(lambda x: losses.hidden_alignment(x, t, mask)[0]))(s))
  assert np.all(np.isfinite(grad)) and np.all(grad[:, ~real] == 0)


def test_bad_arguments_raise():
  w, s, t, mask, _ = _data()
  fn = functools.partial(logits_fn, w)
  with pytest.raises(ValueError, match="divergence"):
    losses.distill(fn, s, t, mask, divergence="kl")
  with pytest.raises(ValueError, match="temperature"):
    losses.distill(fn, s, t, mask, temperature=0.0)
  with pytest.raises(ValueError, match="temperature"):
    losses.distill(fn, s, t, mask, teacher_temperature=-1.0)


# ----------------------------------------------------------------------------- memory

BIG_N, BIG_V, BIG_CHUNK = 1024, 4096, 64


def _big():
  rng = np.random.default_rng(9)
  w = rng.normal(size=(BIG_V, D)).astype(np.float32)
  s, t = rng.normal(size=(2, BIG_N, D)).astype(np.float32)
  mask = np.ones(BIG_N, np.int32)
  loss = lambda w, s: losses.distill(functools.partial(logits_fn, w), s, t, mask,  # noqa: E731
                                     chunk_size=BIG_CHUNK)[0]
  return loss, w, s


@pytest.mark.parametrize("argnums", [(1,), (0, 1)], ids=["frozen-head", "head-too"])
def test_backward_keeps_no_logit_sized_residual(argnums):
  """What reverse mode stores for the backward pass is hidden-sized: no [N, V] logits, not even
  one chunk's [chunk, V], whether or not the head's weights are differentiated (then the
  checkpointed scan body recomputes them). Abstract evaluation: nothing is compiled."""
  loss, w, s = _big()

  def residuals(w, s):
    if argnums == (1,):
      return jax.tree.leaves(jax.vjp(lambda s: loss(w, s), s)[1])
    return jax.tree.leaves(jax.vjp(loss, w, s)[1])
  shapes = [r.shape for r in jax.eval_shape(residuals, w, s)]
  assert shapes, "no residuals found: jax.vjp's pullback layout changed"
  assert max(np.prod(x) for x in shapes) < BIG_CHUNK * BIG_V, shapes


def test_frozen_head_backward_is_one_multiply():
  """With the head frozen (rd's base always is), each chunk's gradient w.r.t. the hidden rows is
  made in the forward pass; the backward pass only scales it: no matmul, no logits."""
  loss, w, s = _big()
  _, pullback = jax.vjp(lambda s: loss(w, s), s)
  backward = jax.make_jaxpr(pullback)(np.float32(1.0))
  assert "dot_general" not in str(backward), backward


@pytest.mark.parametrize("argnums", [(1,), (0, 1)], ids=["frozen-head", "head-too"])
def test_compiled_gradient_temp_memory_is_a_few_chunks(argnums):
  loss, w, s = _big()
  stats = jax.jit(jax.grad(loss, argnums)).lower(w, s).compile().memory_analysis()
  if stats is None:
    pytest.skip("backend reports no memory analysis")
  # A few [chunk, V] buffers, against N / chunk = 16 times that for materialized logits.
  assert stats.temp_size_in_bytes < 6 * BIG_CHUNK * BIG_V * 4, stats.temp_size_in_bytes
