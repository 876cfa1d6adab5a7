"""Packing several short sequences into one row, to spend less compute on padding.

Student prompts are often a fraction of the teacher's length; packing lets a batch of B
student sequences occupy P < B rows. Inside a packed row the k-th sequence has segment id k
(1, 2, 3 ...; 0 stays padding) and positions restarting at 0, so attention masked by
"same segment id" and RoPE see exactly what they would see unpacked.

The response rows keep their per-example layout [B, R]: `rows[b, r]` becomes a position inside
packed row `row_index[b]`, so a loss gathers `hidden[row_index[:, None], rows]` -> [B, R, d]
and compares it with the teacher's [B, R, d] rows as before.
"""

from __future__ import annotations

import numpy as np


def pack(tokens: np.ndarray, positions: np.ndarray, segment_ids: np.ndarray, rows: np.ndarray,
         *, num_rows: int, length: int | None = None, pad_id: int = 0) -> dict[str, np.ndarray]:
  """Packs right-padded [B, T] sequences first-fit, in order, into [num_rows, length] rows.

  Returns tokens, positions, segment_ids [num_rows, length], rows [B, R] (positions in the
  packed row) and row_index [B] (which packed row holds example b). Raises if they don't fit.
  """
  batch, width = tokens.shape
  length = length or width
  lengths = (segment_ids > 0).sum(axis=1)
  if lengths.max(initial=0) > length:
    raise ValueError(f"pack: a sequence of {lengths.max()} tokens exceeds the row length {length}")
  out = {"tokens": np.full((num_rows, length), pad_id, np.int32),
         "positions": np.zeros((num_rows, length), np.int32),
         "segment_ids": np.zeros((num_rows, length), np.int32)}
  used = np.zeros(num_rows, np.int64)       # tokens used per packed row
  segments = np.zeros(num_rows, np.int32)   # sequences per packed row
  row_index = np.zeros(batch, np.int32)
  offsets = np.zeros(batch, np.int32)
  for b, n in enumerate(lengths):
    if n == 0:  # a padding example: nothing to place; its rows are masked anyway
      continue
    fits = np.nonzero(used + n <= length)[0]
    if not len(fits):
      raise ValueError(f"pack: {batch} sequences ({int(lengths.sum())} tokens) do not fit in "
                       f"{num_rows} rows of {length}; raise num_rows")
    p = fits[0]
    start = used[p]
    segments[p] += 1
    out["tokens"][p, start:start + n] = tokens[b, :n]
    out["positions"][p, start:start + n] = positions[b, :n]
    out["segment_ids"][p, start:start + n] = segments[p]
    used[p] += n
    row_index[b], offsets[b] = p, start
  out["rows"] = (rows + offsets[:, None]).astype(np.int32)
  out["row_index"] = row_index
  return out


def pack_batch(batch: dict[str, np.ndarray], *, num_rows: int, side: str = "student",
               length: int | None = None, pad_id: int = 0) -> dict[str, np.ndarray]:
  """A batch dict with its `side` ("student" or non-ensemble "teacher") sequences packed:
  `{side}_tokens/positions/segment_ids` become [num_rows, length], `{side}_rows` point into the
  packed rows, and `{side}_row_index` [B] is added. Everything else is unchanged."""
  if batch[f"{side}_tokens"].ndim != 2:
    raise ValueError(f"pack_batch: {side} sequences must be [B, T] (ensembles are not packed)")
  packed = pack(batch[f"{side}_tokens"], batch[f"{side}_positions"],
                batch[f"{side}_segment_ids"], batch[f"{side}_rows"],
                num_rows=num_rows, length=length, pad_id=pad_id)
  out = dict(batch)
  for key in ("tokens", "positions", "segment_ids", "rows", "row_index"):
    out[f"{side}_{key}"] = packed[key]
  return out
