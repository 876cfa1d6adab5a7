"""The grain pipeline: determinism, resumable state, sharding, epochs, static shapes."""

import itertools

import numpy as np
import pytest

from rd.data.pipeline import make_iterator
from rd.data.templates import QA
from rd.data.tokenize import Buckets
from tests.test_data_helpers import random_examples, tiny_tokenizer
from tests.test_data_tokenize import check_rows

EXAMPLES = random_examples(37, seed=5)
BUCKETS = Buckets(teacher=(32, 64, 128), student=(32, 64), response=(8, 16, 32))


def iterator(**kw):
  args = dict(global_batch=4, buckets=BUCKETS, seed=0, shard=(0, 1))
  args.update(kw)
  return make_iterator(kw.pop("examples", EXAMPLES), tiny_tokenizer(), QA,
                       **{k: v for k, v in args.items() if k != "examples"})


def indices(it, n):
  return [b["example_index"].tolist() for b in itertools.islice(it, n)]


def test_same_seed_same_order_and_other_seed_differs():
  first = indices(iterator(), 12)
  assert first == indices(iterator(), 12)
  assert first != indices(iterator(seed=1), 12)
  epoch = sum(first[:9], [])  # 9 batches of 4: the first 36 of epoch 1's 37 examples
  assert len(set(epoch)) == 36 and set(epoch) <= set(range(37))


def test_restored_state_gives_identical_next_batches():
  it = iterator(num_threads=2, prefetch=4)
  for _ in range(5):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(7)]  # crosses into the second epoch
  fresh = iterator(num_threads=2, prefetch=4)
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_worker_processes_give_the_same_batches_and_resume():
  """`workers` (grain's mp_prefetch) is a speed option only: batches and state as in-process."""
  want = list(itertools.islice(iterator(), 12))
  it = iterator(workers=2)
  got = [next(it) for _ in range(5)]
  state = it.get_state()
  fresh = iterator(workers=2)
  fresh.set_state(state)
  got += [next(fresh) for _ in range(7)]  # resumed across the epoch boundary
  for w, g in zip(want, got, strict=True):
    for key in w:
      np.testing.assert_array_equal(g[key], w[key])


def test_orbax_round_trip(tmp_path):
  import grain
  import orbax.checkpoint as ocp
  it = iterator()
  for _ in range(3):
    next(it)
  with ocp.CheckpointManager(tmp_path) as manager:
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
  want = indices(it, 3)
  fresh = iterator()
  with ocp.CheckpointManager(tmp_path) as manager:
    manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  assert indices(fresh, 3) == want


def test_two_shards_partition_each_epoch():
  per_epoch = 18  # 37 examples cut to 36, over 2 hosts
  shards = [sum(indices(iterator(global_batch=4, shard=(i, 2), num_epochs=2), 100), [])
            for i in (0, 1)]
  assert [len(s) for s in shards] == [2 * per_epoch] * 2  # equal, so hosts stay in step
  for epoch in range(2):
    a, b = (set(s[epoch * per_epoch:(epoch + 1) * per_epoch]) for s in shards)
    assert not a & b and len(a | b) == 36 and a | b <= set(range(37))


def test_finite_epochs_without_drop_cover_everything_once():
  it = iterator(global_batch=8, num_epochs=1, shuffle=False, drop_remainder=False)
  batches = list(it)
  assert len(batches) == 5
  flat = sum((b["example_index"].tolist() for b in batches), [])
  assert flat == list(range(37)) + [-1] * 3
  assert batches[-1]["teacher_tokens"].shape[0] == 8


def test_fixed_buckets_give_one_static_shape_and_valid_rows():
  it = iterator(buckets=Buckets.fixed(128, 64, 32), global_batch=6)
  shapes = set()
  for batch in itertools.islice(it, 10):
    shapes.add(tuple((k, v.shape) for k, v in sorted(batch.items())))
    check_rows(batch)
  assert len(shapes) == 1


def test_ensembles_and_packing_through_the_pipeline():
  ens = random_examples(8, seed=6, k=3)
  batch = next(iterator(examples=ens))
  assert batch["teacher_tokens"].shape[:2] == (4, 3)
  check_rows(batch)
  buckets = Buckets(teacher=(64, 128), student=(32, 128), response=(8, 32))
  packed = next(iterator(pack_student_rows=3, buckets=buckets))
  assert packed["student_tokens"].shape == (3, 128) and packed["student_row_index"].shape == (4,)
  check_rows(packed)


def test_argument_errors():
  with pytest.raises(ValueError, match="does not divide"):
    iterator(global_batch=5, shard=(0, 2))
  with pytest.raises(ValueError, match="mix ensemble sizes"):
    iterator(examples=random_examples(2, k=2) + random_examples(2))
