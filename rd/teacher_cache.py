"""The frozen teacher's outputs on the response rows, computed once and reused every epoch.

Why hidden rows: the teacher is frozen, so its last hidden state at each response row fixes
its logits exactly (`lm_logits(base, h)`); storing those rows ([R, d] per example) instead of
[R, V] distributions keeps the cache exact and small (d = 640 floats per row for Gemma 3
270M, against V = 262144). Every later step skips the teacher's forward pass over the whole
context and only applies the (frozen) head to the cached rows inside the loss.

Memory: examples x response_len x d x 4 bytes on each host (x K for a K-context ensemble, plus
x len(hidden_layers) for hidden alignment), e.g. 8 MB for 400 examples of 8 rows at d = 640.

Every process holds the rows of every example: the pipeline reshuffles each epoch before it
splits the examples over processes, so a process meets different examples in every epoch. The
cache pass splits the work over processes like an evaluation and all-gathers the rows.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from rd import sharding
from rd.data import shared_prefix
from rd.data.tokenize import model_inputs

# Batch keys only the teacher's forward pass reads; a cached batch does not carry them.
TEACHER_INPUTS = ("teacher_tokens", "teacher_positions", "teacher_segment_ids", "teacher_rows",
                  "prefix_tokens", "prefix_positions", "prefix_segment_ids", "prefix_index")


@dataclasses.dataclass
class TeacherCache:
  """Per-example teacher rows: hidden [n, (K,) R, d] and, for hidden alignment, captured
  [n, C, R, d]; `slot[example_index]` is the example's position in them (-1: not cached)."""

  slot: np.ndarray
  hidden: np.ndarray
  captured: np.ndarray | None

  def attach(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batch with `teacher_hidden` (and `teacher_captured`) in place of the teacher's
    sequences. Padding examples (example_index -1) get zeros; their rows are masked anyway."""
    index = batch["example_index"]
    real = index >= 0
    slots = self.slot[np.where(real, index, 0)]
    if np.any(real & (slots < 0)):
      missing = index[real & (slots < 0)][:5].tolist()
      raise KeyError(f"examples {missing} are not in the teacher cache; it was built for "
                     "another data shard or dataset")
    r = batch["row_mask"].shape[1]
    out = {k: v for k, v in batch.items() if k not in TEACHER_INPUTS}
    out["teacher_hidden"] = _pick(self.hidden, slots, real, r)
    if self.captured is not None:
      out["teacher_captured"] = _pick(self.captured, slots, real, r)
    return out


def _pick(store: np.ndarray, slots: np.ndarray, real: np.ndarray, rows: int) -> np.ndarray:
  picked = store[np.maximum(slots, 0)][..., :rows, :]
  return np.where(real.reshape((-1,) + (1,) * (picked.ndim - 1)), picked, 0).astype(store.dtype)


def pass_examples(examples: list, process_count: int) -> list:
  """`examples` padded (by repeating the first ones) to a multiple of the process count, so
  the per-process split of the cache pass drops none; `build` maps indices back modulo n."""
  return list(examples) + list(examples[:(-len(examples)) % process_count])


def build(teacher_fn, batches, mesh, *, num_examples: int, response_len: int) -> TeacherCache:
  """Runs `teacher_fn(batch) -> {"hidden": [B, (K,) R, d], "captured": [B, C, R, d] | absent}`
  (jitted, global arrays) over `batches` (this process's share of one pass over the examples,
  numpy) and returns every example's rows, zero-padded to `response_len`, on every process."""
  local: dict[str, list[np.ndarray]] = {}
  for batch in batches:
    outputs = teacher_fn(sharding.shard_batch(model_inputs(batch), mesh))
    outputs = multihost_utils.global_array_to_host_local_array(
        outputs, mesh, jax.tree.map(lambda _: P(sharding.BATCH_AXES), outputs))
    outputs = {**jax.device_get(outputs), "index": batch["example_index"]}
    for name, value in outputs.items():
      value = np.asarray(value)
      if value.ndim > 1:  # rows: pad R up to response_len
        pad = [(0, 0)] * (value.ndim - 2) + [(0, response_len - value.shape[-2]), (0, 0)]
        value = np.pad(value, pad)
      local.setdefault(name, []).append(value)
  if not local:
    raise ValueError("the teacher cache pass saw no examples")
  gathered = {name: np.concatenate(parts) for name, parts in local.items()}
  if jax.process_count() > 1:  # equal shapes on every process: padding examples are kept
    gathered = jax.tree.map(np.asarray, multihost_utils.process_allgather(gathered, tiled=True))
  real = gathered["index"] >= 0
  slot = np.full(num_examples, -1, np.int64)
  slot[gathered["index"][real] % num_examples] = np.arange(real.sum())
  return TeacherCache(slot=slot, hidden=gathered["hidden"][real],
                      captured=gathered["captured"][real] if "captured" in gathered else None)


def share_prefixes(batches):
  """`batches` with each one's shared contexts run once where that runs fewer teacher tokens
  (rd/data/shared_prefix.py). Every process rewrites to the largest sizes any process needs,
  and all of them keep or rewrite a batch alike, so the global arrays line up."""
  for batch in batches:
    plan = shared_prefix.plan(batch)
    if plan is None:  # an ensemble batch
      yield batch
      continue
    sizes = np.array([plan.num_groups, plan.prefix_size, plan.suffix_size])
    if jax.process_count() > 1:
      sizes = np.asarray(multihost_utils.process_allgather(sizes)).max(axis=0)
    sizes = tuple(int(n) for n in sizes)
    if shared_prefix.worthwhile(batch, *sizes):
      batch = shared_prefix.rewrite(batch, plan, *sizes)
    yield batch
