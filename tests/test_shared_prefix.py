"""Shared contexts found in collated teacher batches: the rewrite is exact, token for token, and
the teacher's rows from it equal those of the full sequences."""

import random

import jax
import numpy as np

from rd import distill, sharding
from rd.data import Buckets, Example, Featurizer, Template, collate, shared_prefix
from rd.teacher_cache import build, share_prefixes
from tests.test_data_helpers import random_text, tiny_tokenizer
from tests.test_step import model  # noqa: F401  (pytest fixture)

jax.config.update("jax_default_matmul_precision", "highest")
BUCKETS = Buckets.fixed(160, 24, 6)
TEMPLATE = Template(teacher="{context}\n{query}", student="{query}")


def _batch(contexts_of: list[int], batch_size: int | None = None, seed: int = 0,
           buckets: Buckets = BUCKETS):
  """Examples whose contexts are drawn from a few long ones (`contexts_of[i]` picks example
  i's), collated with the tiny tokenizer; padded to `batch_size`."""
  rng = random.Random(seed)
  contexts = [random_text(rng, 12, 15) for _ in range(max(contexts_of) + 1)]
  examples = [Example(context=contexts[c], query=random_text(rng, 2, 4),
                      response=random_text(rng, 2, 3)) for c in contexts_of]
  featurize = Featurizer(tiny_tokenizer(), TEMPLATE, buckets)
  return collate([featurize(e, i) for i, e in enumerate(examples)], buckets,
                 batch_size=batch_size)


def _joined(rewritten, b):
  """Example b's full teacher sequence put back together: its group's prefix, then its suffix."""
  g = rewritten["prefix_index"][b]
  parts = []
  for side, row in (("prefix", g), ("teacher", b)):
    keep = rewritten[f"{side}_segment_ids"][row] > 0
    parts.append(np.stack([rewritten[f"{side}_{k}"][row][keep]
                           for k in ("tokens", "positions", "segment_ids")]))
  return np.concatenate(parts, axis=1)


def test_groups_share_their_common_prefix_and_rejoin_exactly():
  batch = _batch([0, 1, 0, 0], batch_size=6)
  plan = shared_prefix.plan(batch)
  assert plan.group.tolist() == [0, 1, 0, 0, -1, -1]
  assert plan.prefix_len[0] >= 24  # the shared context: at least 12 words and their spaces
  assert plan.prefix_len[0] <= batch["teacher_rows"][[0, 2, 3], 0].min()
  sizes = (plan.num_groups, plan.prefix_size, plan.suffix_size)
  assert sizes[0] == 2 and sizes[1] % 32 == 0 and sizes[2] % 32 == 0
  rewritten = shared_prefix.rewrite(batch, plan, *sizes)
  for b in range(4):
    n = batch["teacher_segment_ids"][b].sum()
    full = np.stack([batch[f"teacher_{k}"][b, :n] for k in ("tokens", "positions", "segment_ids")])
    np.testing.assert_array_equal(_joined(rewritten, b), full)
    rows = batch["row_mask"][b] > 0
    cut = plan.prefix_len[plan.group[b]]
    np.testing.assert_array_equal(rewritten["teacher_rows"][b][rows] + cut,
                                  batch["teacher_rows"][b][rows])
  assert not rewritten["teacher_segment_ids"][4:].any()  # padding examples stay empty


def test_unshared_batches_are_left_alone_and_ensembles_skipped():
  unshared = _batch([0, 1, 2, 3], buckets=Buckets.fixed(64, 24, 6))  # no padding to trim either
  plan = shared_prefix.plan(unshared)
  assert plan.saved_tokens == 0
  assert not shared_prefix.worthwhile(unshared, plan.num_groups, plan.prefix_size,
                                      plan.suffix_size)
  assert list(share_prefixes([unshared]))[0] is unshared
  ensemble = {"teacher_tokens": np.zeros((2, 3, 8), np.int32)}
  assert shared_prefix.plan(ensemble) is None


def test_the_teachers_rows_from_shared_prefixes_equal_the_full_sequences(model):  # noqa: F811
  batch = _batch([0, 0, 1, 0, 1, 1, 0], batch_size=8, seed=1)
  (rewritten,) = share_prefixes([batch])
  assert "prefix_tokens" in rewritten and rewritten["prefix_tokens"].shape[0] == 2
  assert rewritten["teacher_tokens"].shape[1] < batch["teacher_tokens"].shape[1]
  teacher = jax.jit(lambda b: distill.teacher_outputs(model, None, b, layers=(1,)))
  mesh = sharding.make_mesh()
  caches = [build(teacher, [b], mesh, num_examples=7, response_len=6) for b in (batch, rewritten)]
  np.testing.assert_array_equal(caches[1].slot, caches[0].slot)
  real = batch["row_mask"][:7] > 0  # masked rows point anywhere; the loss never reads them
  np.testing.assert_allclose(caches[1].hidden[real], caches[0].hidden[real], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(caches[1].captured[:, 0][real], caches[0].captured[:, 0][real],
                             rtol=1e-5, atol=1e-5)
