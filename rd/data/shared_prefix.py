"""Teacher batches whose examples share a context, rewritten so that each context runs once.

Examples that continue one document (prompt distillation's question-answer pairs, W2 in
`launch/bench.py`) start their teacher sequences with the same tokens. `plan` finds those
common token prefixes in a collated batch and `rewrite` puts the batch into the layout that
`rd.distill.teacher_outputs` runs through a shared KV cache: `prefix_tokens/positions/
segment_ids` [G, P] (one row per group of examples), `prefix_index` [B], and the teacher
sequences [B, S] cut down to what follows their group's prefix, positions counting on.

It works on token ids, not text, so it is exact whatever the tokenizer merged at the boundary:
a group's prefix is the longest run of leading tokens (and positions) all its members share,
and it ends at or before each member's last prompt token, so every response row is computed in
the suffix pass. Groups form greedily in batch order; a member must share at least
`min_shared` tokens with its group. Ensemble batches ([B, K, T] teacher tokens) are left as
they are.

Shapes: G is a power of two, P and S multiples of `align`, so a pass over a dataset compiles
few programs. In a multi-process job every process must build the same shapes: `plan` gives
each process's sizes, and the caller takes their maximum over processes
(`rd.teacher_cache.share_prefixes`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rd.data.tokenize import round_up

FIELDS = ("tokens", "positions", "segment_ids")  # of the teacher's and the prefixes' sequences


@dataclasses.dataclass(frozen=True)
class Plan:
  """group [B] (-1: a padding example), each group's prefix length, and the padded sizes."""

  group: np.ndarray
  prefix_len: np.ndarray
  num_groups: int
  prefix_size: int
  suffix_size: int
  saved_tokens: int  # teacher tokens no longer run, before padding


def _common(a: np.ndarray, b: np.ndarray) -> int:
  """How many leading (token, position, segment) triples two [T, 3] rows share."""
  differ = np.flatnonzero(np.any(a != b, axis=-1))
  return int(differ[0]) if len(differ) else len(a)


def plan(batch: dict[str, np.ndarray], *, min_shared: int = 16, align: int = 32) -> Plan | None:
  """Groups the batch's examples by shared leading teacher tokens; None for an ensemble batch.
  A batch of padding examples only gets an empty plan (every process must take part)."""
  tokens = batch["teacher_tokens"]
  if tokens.ndim != 2:
    return None
  positions, segments = batch["teacher_positions"], batch["teacher_segment_ids"]
  # A token joins the comparison with its position and segment: the same ids at other positions
  # are not the same prefix.
  keys = np.stack([tokens, positions, segments], axis=-1)
  real = segments[:, 0] > 0
  lengths = segments.sum(axis=1)
  last_prompt = batch["teacher_rows"][:, 0]  # the prefix may not reach past it
  group = np.full(len(tokens), -1, np.int64)
  prefix_len: list[int] = []
  leaders: list[int] = []
  for b in np.flatnonzero(real):
    limit = int(last_prompt[b])
    for g, leader in enumerate(leaders):
      shared = min(_common(keys[leader], keys[b]), limit, prefix_len[g])
      if shared >= min_shared:
        group[b], prefix_len[g] = g, shared
        break
    else:
      group[b] = len(leaders)
      leaders.append(int(b))
      prefix_len.append(limit)
  prefix_len = np.asarray(prefix_len, np.int64)
  members = np.flatnonzero(real)
  suffix = max((int(lengths[b] - prefix_len[group[b]]) for b in members), default=0)
  saved = int(prefix_len[group[members]].sum() - prefix_len.sum())
  longest_prefix = max(int(prefix_len.max(initial=0)), 1)
  return Plan(group, prefix_len, 1 << max(len(leaders) - 1, 0).bit_length(),
              round_up(longest_prefix, align), round_up(max(suffix, 1), align), saved)


def worthwhile(batch: dict[str, np.ndarray], num_groups: int, prefix_size: int,
               suffix_size: int) -> bool:
  """Whether the shared layout runs fewer teacher tokens (padding included) than the batch."""
  b, t = batch["teacher_tokens"].shape[:2]
  return num_groups * prefix_size + b * suffix_size < b * t


def rewrite(batch: dict[str, np.ndarray], p: Plan, num_groups: int, prefix_size: int,
            suffix_size: int) -> dict[str, np.ndarray]:
  """The batch in the shared-prefix layout, with at least the given (G, P, S) sizes."""
  full = {k: batch[f"teacher_{k}"] for k in FIELDS}
  batch_size = len(full["tokens"])
  out = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
  prefix = {k: np.zeros((num_groups, prefix_size), np.int32) for k in FIELDS}
  suffix = {k: np.zeros((batch_size, suffix_size), np.int32) for k in FIELDS}
  rows = np.zeros_like(batch["teacher_rows"])
  for b in range(batch_size):
    g = p.group[b]
    if g < 0:
      continue
    n, cut = int(full["segment_ids"][b].sum()), int(p.prefix_len[g])
    for k in FIELDS:  # every member of a group holds the same prefix; any of them writes it
      prefix[k][g, :cut] = full[k][b, :cut]
      suffix[k][b, :n - cut] = full[k][b, cut:n]
    rows[b] = np.where(batch["row_mask"][b] > 0, batch["teacher_rows"][b] - cut, 0)
  out.update({f"prefix_{k}": v for k, v in prefix.items()})
  out.update({f"teacher_{k}": v for k, v in suffix.items()})
  out["prefix_index"] = np.maximum(p.group, 0).astype(np.int32)
  out["teacher_rows"] = rows
  return out
