"""The grain input pipeline: `Example`s -> shuffled, sharded, repeated, fixed-shape batches.

Built on `grain.MapDataset` (random access), in this order:

  source -> (index, example) -> shuffle(seed) -> this host's shard -> repeat(num_epochs)
         -> tokenize -> batch(per-host batch, collate) [-> pack student rows]

* Shuffle first, then shard: every host computes the same global permutation and keeps every
  `count`-th element of it, so hosts partition the data without overlap. The permutation is
  first cut to a multiple of `count`, so all hosts see the same number of examples (and
  batches) per epoch; `repeat` reshuffles every epoch with a seed derived from `seed`.
* Per-host batch = global batch / process count; the train loop turns host batches into
  global arrays with `jax.make_array_from_process_local_data`.
* Shapes: each batch is padded to the smallest bucket that fits it (see `tokenize.Buckets`);
  give one-element bucket tuples for a single static shape. Packed student rows (optional)
  always have the largest student bucket's length.
* Checkpointing: the iterator's state is `{"next_index": n}` (batches consumed), which fully
  determines what comes next given the same examples and arguments. Save it with
  `iterator.get_state()` / restore with `set_state()` on an iterator built the same way, or
  through Orbax: `grain.checkpoint.CheckpointSave(iterator)` /
  `grain.checkpoint.CheckpointRestore(iterator)` (one JSON file per process), or Orbax v1's
  `StatefulCheckpointable` protocol (`iterator.save` / `iterator.load`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import grain
from absl import flags

from rd.data.examples import Example
from rd.data.packing import pack_batch
from rd.data.templates import Template
from rd.data.tokenize import Buckets, Featurizer, collate


def default_shard() -> tuple[int, int]:
  """(this process's index, process count) from JAX."""
  import jax  # deferred: the data layer is usable without initializing a JAX backend
  return jax.process_index(), jax.process_count()


def check_ensemble_size(examples: Sequence[Example]) -> int:
  """K if every example is a K-context ensemble, 0 if none is; mixing is an error."""
  ks = {len(e.contexts) for e in examples}
  if len(ks) > 1:
    raise ValueError(f"examples mix ensemble sizes len(contexts) in {sorted(ks)}; "
                     "one pipeline needs one K")
  return ks.pop() if ks else 0


def _with_index(size: int, index: int, example: Example) -> tuple[int, Example]:
  # A repeated dataset passes the index in the whole stream (epoch * size + i); the example's
  # own index is what `example_index` promises.
  return index % size, example


def _featurize(featurizer: Featurizer, indexed: tuple[int, Example]):
  index, example = indexed
  return featurizer(example, index)


def make_dataset(examples: Sequence[Example] | grain.MapDataset, featurizer: Featurizer, *,
                 batch_size: int, seed: int, num_epochs: int | None = None,
                 shard: tuple[int, int] = (0, 1), shuffle: bool = True,
                 drop_remainder: bool = True,
                 pack_student_rows: int | None = None) -> grain.MapDataset:
  """A `grain.MapDataset` of this host's batches (`batch_size` is per host).

  `num_epochs=None` repeats forever; batches run across epoch boundaries (only the very last
  batch of a finite run can be short). With `drop_remainder=False` (evaluation) the final short
  batch is padded with masked examples instead of dropped. `pack_student_rows=P` packs each
  batch's student sequences into P rows of the largest student bucket (`packing.pack_batch`), so
  the packed student side has one static shape [P, max(buckets.student)]; a batch that does not
  fit raises.
  """
  index, count = shard
  if not 0 <= index < count:
    raise ValueError(f"shard index {index} not in [0, {count})")
  if not isinstance(examples, grain.MapDataset):
    check_ensemble_size(examples)
  ds = examples if isinstance(examples, grain.MapDataset) else grain.MapDataset.source(examples)
  n = len(ds)
  if n // count == 0:
    raise ValueError(f"{n} examples cannot be split over {count} processes")
  ds = ds.map_with_index(functools.partial(_with_index, n))
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds[: n - n % count][index::count]
  ds = ds.repeat(num_epochs)
  ds = ds.map(functools.partial(_featurize, featurizer))
  ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                batch_fn=functools.partial(collate, buckets=featurizer.buckets,
                                           pad_id=featurizer.pad_id, batch_size=batch_size))
  if pack_student_rows:
    ds = ds.map(functools.partial(pack_batch, num_rows=pack_student_rows,
                                  length=featurizer.buckets.student[-1],
                                  pad_id=featurizer.pad_id))
  return ds


def make_iterator(examples: Sequence[Example] | grain.MapDataset, tokenizer: Any,
                  template: Template, *, global_batch: int, buckets: Buckets, seed: int,
                  num_epochs: int | None = None, shard: tuple[int, int] | None = None,
                  shuffle: bool = True, drop_remainder: bool = True,
                  add_bos: bool = True, add_eos: bool | int = False,
                  overflow: str = "truncate", pack_student_rows: int | None = None,
                  num_threads: int = 2, prefetch: int = 4,
                  workers: int = 0) -> grain.DatasetIterator:
  """A checkpointable iterator over this host's batches of numpy int32 arrays.

  `shard` defaults to `(jax.process_index(), jax.process_count())`; `global_batch` must divide
  by the process count. `num_threads` threads tokenize and collate `prefetch` batches ahead.
  `workers > 0` moves that work into as many processes (grain's `mp_prefetch`): the same batches
  in the same order, and a state that checkpoints and restores the same way; worth it when
  featurizing bounds the step (a small model on an accelerator with a many-core host), not on a
  few cores, where shipping batches between processes costs more than it saves.
  The other arguments are those of `Featurizer` and `make_dataset`.
  """
  index, count = shard if shard is not None else default_shard()
  if global_batch % count:
    raise ValueError(f"global_batch {global_batch} does not divide by {count} processes")
  featurizer = Featurizer(tokenizer, template, buckets, add_bos=add_bos, add_eos=add_eos,
                          overflow=overflow)
  ds = make_dataset(examples, featurizer, batch_size=global_batch // count, seed=seed,
                    num_epochs=num_epochs, shard=(index, count), shuffle=shuffle,
                    drop_remainder=drop_remainder, pack_student_rows=pack_student_rows)
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  iter_ds = ds.to_iter_dataset(options)
  if workers:
    # grain's workers read absl flags; outside an absl app (tests, notebooks) take the defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(iter_ds)
