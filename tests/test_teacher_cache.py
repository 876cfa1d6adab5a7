"""The teacher cache is exact: cached rows give the same losses and the same training run."""

import json

import jax
import numpy as np
import pytest

from configs.distill import get_config
from rd import distill, sharding, train
from rd.teacher_cache import TEACHER_INPUTS, build
from tests.fixtures import make_model_dir, make_task
from tests.test_step import CFG, _batch, model  # noqa: F401  (pytest fixture)

jax.config.update("jax_default_matmul_precision", "highest")


def _cache_for(model, batch, layers=()):  # noqa: F811
  batch = {**batch, "example_index": np.arange(len(batch["row_mask"]))[::-1].copy()}
  teacher = jax.jit(lambda b: distill.teacher_outputs(model, None, b, layers))
  mesh = sharding.make_mesh()
  cache = build(teacher, [batch], mesh, num_examples=len(batch["row_mask"]),
                response_len=batch["row_mask"].shape[1] + 2)
  return batch, cache


@pytest.mark.parametrize("k", [0, 3])
def test_cached_rows_give_the_same_losses(model, k):  # noqa: F811
  cfg = CFG.__class__(**{**CFG.__dict__, "hidden_weight": 1.0, "hidden_layers": (0, 1)})
  batch, cache = _cache_for(model, _batch(k=k), layers=cfg.hidden_layers)
  attached = cache.attach(batch)
  assert not set(TEACHER_INPUTS) & set(attached)
  fresh = distill.loss_terms(model, None, None, batch, cfg)
  cached = distill.loss_terms(model, None, None, attached, cfg)
  for name in ("kl", "hidden"):
    np.testing.assert_allclose(cached[name], fresh[name], rtol=1e-5, atol=1e-6)
    assert float(fresh[name][0]) > 0


def test_attach_zeroes_padding_and_rejects_unknown_examples(model):  # noqa: F811
  batch, cache = _cache_for(model, _batch())
  padded = {**batch, "example_index": np.array([0, 1, -1, 2])}
  assert not np.any(cache.attach(padded)["teacher_hidden"][2])
  cache.slot[1] = -1
  with pytest.raises(KeyError, match="not in the teacher cache"):
    cache.attach(padded)


def test_a_cached_run_trains_like_an_uncached_one(tmp_path):
  model_dir = make_model_dir(str(tmp_path / "model"), sharpness=8.0)
  data = make_task(str(tmp_path / "train.jsonl"), 6)
  runs = {}
  for cached in (False, True):
    c = get_config("tiny")
    c.model.path, c.data.train = model_dir, data
    c.data.global_batch = 4  # 6 examples: epochs of 1.5 steps, so batches straddle epochs
    c.teacher.cache = cached
    c.train.update(steps=5, log_every=1, checkpoint_every=1000)
    workdir = tmp_path / f"wd{int(cached)}"
    runs[cached] = train.train(c, str(workdir))
    losses = [json.loads(line).get("train/loss") for line in open(workdir / "metrics.jsonl")]
    runs[cached].losses = [x for x in losses if x is not None]
  np.testing.assert_allclose(runs[True].losses, runs[False].losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(runs[True].state.params), jax.tree.leaves(runs[False].state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert runs[False].losses[-1] < runs[False].losses[0]


def test_a_shared_prefix_runs_once_and_gives_the_same_rows(model):  # noqa: F811
  """Two contexts of different lengths, each continued by two examples: the teacher's rows
  from the shared-prefix KV cache equal those of the full, unshared sequences."""
  rng = np.random.default_rng(0)
  prefixes = [rng.integers(3, 60, size=n) for n in (7, 4)]
  suffixes = [rng.integers(3, 60, size=n) for n in (5, 6, 3, 6)]
  group = np.array([0, 1, 1, 0])
  p_len, s_len, rows = 8, 6, 2
  batch = {"prefix_tokens": np.zeros((2, p_len), np.int32),
           "prefix_positions": np.zeros((2, p_len), np.int32),
           "prefix_segment_ids": np.zeros((2, p_len), np.int32), "prefix_index": group,
           "teacher_tokens": np.zeros((4, s_len), np.int32),
           "teacher_positions": np.zeros((4, s_len), np.int32),
           "teacher_segment_ids": np.zeros((4, s_len), np.int32),
           "teacher_rows": np.zeros((4, rows), np.int32), "row_mask": np.ones((4, rows))}
  full = {"teacher_tokens": np.zeros((4, p_len + s_len), np.int32),
          "teacher_segment_ids": np.zeros((4, p_len + s_len), np.int32),
          "teacher_rows": np.zeros((4, rows), np.int32), "row_mask": np.ones((4, rows))}
  for g, p in enumerate(prefixes):
    batch["prefix_tokens"][g, :len(p)] = p
    batch["prefix_positions"][g, :len(p)] = np.arange(len(p))
    batch["prefix_segment_ids"][g, :len(p)] = 1
  for i, s in enumerate(suffixes):
    p = prefixes[group[i]]
    batch["teacher_tokens"][i, :len(s)] = s
    batch["teacher_positions"][i] = len(p) + np.arange(s_len)
    batch["teacher_segment_ids"][i, :len(s)] = 1
    batch["teacher_rows"][i] = [len(s) - 3, len(s) - 2]
    joined = np.concatenate([p, s])
    full["teacher_tokens"][i, :len(joined)] = joined
    full["teacher_segment_ids"][i, :len(joined)] = 1
    full["teacher_rows"][i] = len(p) + batch["teacher_rows"][i]
  full["teacher_positions"] = np.broadcast_to(np.arange(p_len + s_len), (4, p_len + s_len))
  shared = distill.teacher_outputs(model, None, batch, layers=(1,))
  unshared = distill.teacher_outputs(model, None, full, layers=(1,))
  for name in ("hidden", "captured"):
    np.testing.assert_allclose(shared[name], unshared[name], rtol=1e-5, atol=1e-5)
