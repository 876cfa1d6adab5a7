"""Segment-by-segment tokenization and fixed-shape teacher/student batches.

Why segment by segment: the loss compares teacher and student predictions of the *same*
response token ids. Tokenizing a joined "prompt + response" string lets the tokenizer merge
across the boundary, differently for the two prompts. So every sequence is built from ids:

    [bos] + encode(rendered prompt) + encode(response) [+ eos]      (no special tokens added)

and the response ids are computed once per example and shared by all its sequences.

Lengths and overflow (`Featurizer`): the largest bucket of each kind is a hard limit.
* A response longer than the largest response bucket is cut from the RIGHT (teacher and student
  still see identical response ids; the loss covers the kept prefix).
* A sequence longer than the largest teacher/student bucket loses tokens from the LEFT of its
  prompt (BOS is kept, the response is kept intact): the end of the prompt, next to the answer,
  matters most.
Both are counted and logged (at the 1st, 2nd, 4th, 8th ... occurrence) with
`overflow="truncate"` (default), or raise with `overflow="error"`. Nothing is silently dropped,
so every host of a multi-host job sees the same number of batches.

Batches (`collate`), int32 throughout, B = batch size, K = ensemble size:

  teacher_tokens, teacher_positions, teacher_segment_ids   [B, Tt]   ([B, K, Tt] for ensembles)
  student_tokens, student_positions, student_segment_ids   [B, Ts]
  teacher_rows [B, R] ([B, K, R]), student_rows [B, R], targets [B, R], row_mask [B, R]
  example_index [B]                                        (-1 for padding examples)

Sequences are right-padded; segment id 1 marks real tokens, 0 padding; positions count from 0.
`*_rows[b, r]` is the position whose next-token prediction is response token r, so
`tokens[b, rows[b, r] + 1] == targets[b, r]` wherever `row_mask[b, r] == 1`. Padding rows point
at position 0 and are masked. Tt, Ts and R are each the smallest configured bucket that fits the
longest sequence of the batch (one-element bucket tuples give one static shape for all batches).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tokenizers
from absl import logging

from rd.data.examples import Example
from rd.data.templates import Template


def _sizes(values: Sequence[int], name: str) -> tuple[int, ...]:
  sizes = tuple(sorted({int(v) for v in values}))
  if not sizes or sizes[0] < 1:
    raise ValueError(f"Buckets.{name} must be a non-empty list of positive lengths, got {values}")
  return sizes


@dataclasses.dataclass(frozen=True)
class Buckets:
  """Allowed padded lengths. Each distinct batch shape costs one jit compilation, so keep these
  short; a one-element tuple fixes that length for every batch."""
  teacher: tuple[int, ...] = (128, 256, 512, 1024)
  student: tuple[int, ...] = (64, 128, 256, 512)
  response: tuple[int, ...] = (32, 64, 128, 256)

  def __post_init__(self):
    for name in ("teacher", "student", "response"):
      object.__setattr__(self, name, _sizes(getattr(self, name), name))
    if self.response[-1] >= min(self.teacher[-1], self.student[-1]):
      raise ValueError(f"largest response bucket {self.response[-1]} must be shorter than the "
                       f"largest teacher ({self.teacher[-1]}) and student ({self.student[-1]}) "
                       "buckets, to leave room for a prompt")

  @classmethod
  def fixed(cls, teacher: int, student: int, response: int) -> Buckets:
    return cls((teacher,), (student,), (response,))


def pick_bucket(length: int, sizes: Sequence[int]) -> int:
  """The smallest size >= length."""
  i = bisect.bisect_left(sizes, length)
  if i == len(sizes):
    raise ValueError(f"length {length} exceeds the largest bucket {sizes[-1]}")
  return sizes[i]


@dataclasses.dataclass(frozen=True)
class Tokenized:
  """One example's id sequences. The last `num_response` ids of every sequence are the response
  (identical in all of them)."""
  teacher: tuple[np.ndarray, ...]  # K sequences
  student: np.ndarray
  num_response: int
  ensemble: bool = False
  index: int = -1

  @property
  def response(self) -> np.ndarray:
    return self.student[len(self.student) - self.num_response:]


class OverflowCounter:
  """Thread-safe counts of truncations, logged at powers of two so a long run stays readable."""

  def __init__(self):
    self._lock = threading.Lock()
    self.counts: collections.Counter[str] = collections.Counter()

  def add(self, kind: str, message: str) -> None:
    with self._lock:
      self.counts[kind] += 1
      n = self.counts[kind]
    if n & (n - 1) == 0:
      logging.warning("data: %s truncated %d time(s) so far; latest: %s", kind, n, message)

  # Picklable for grain's worker processes (`data.workers`): each worker counts its own.
  def __getstate__(self):
    return {"counts": self.counts}

  def __setstate__(self, state):
    self._lock = threading.Lock()
    self.counts = state["counts"]


class Featurizer:
  """Example -> `Tokenized`, with the tokenizer, template and length limits bound.

  `tokenizer` is any Hugging Face tokenizer (`encode(text, add_special_tokens=False)`,
  `bos_token_id`, `eos_token_id`, `pad_token_id`). `add_eos` may be True (the tokenizer's EOS)
  or an explicit id (e.g. a chat model's end-of-turn token); it becomes the last response token,
  so the student learns where to stop. Without a BOS id (`add_bos=False`, or a tokenizer
  without one) every prompt must be non-empty, since something must predict the first response
  token.
  """

  def __init__(self, tokenizer: Any, template: Template, buckets: Buckets, *,
               add_bos: bool = True, add_eos: bool | int = False, overflow: str = "truncate"):
    if overflow not in ("truncate", "error"):
      raise ValueError(f"overflow must be 'truncate' or 'error', got {overflow!r}")
    self.tokenizer, self.template, self.buckets = tokenizer, template, buckets
    self.overflow = overflow
    self.bos = tokenizer.bos_token_id if add_bos else None
    self.eos = _eos_id(tokenizer, add_eos)
    self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    self.counter = OverflowCounter()
    # A fast tokenizer's Rust backend gives the same ids as `tokenizer.encode` ~5x sooner: the
    # Python wrapper around it was 90% of the featurizing time, which bounded a small model's
    # training on a GPU at ~12 steps/s (batches of 256).
    backend = getattr(tokenizer, "backend_tokenizer", None)
    self._backend = backend if isinstance(backend, tokenizers.Tokenizer) else None

  def encode(self, text: str) -> list[int]:
    if not text:
      return []
    if self._backend is not None:
      return self._backend.encode(text, add_special_tokens=False).ids
    return list(self.tokenizer.encode(text, add_special_tokens=False))

  def __call__(self, example: Example, index: int = -1) -> Tokenized:
    response = self._fit_response(self.encode(example.response), index)
    teacher = tuple(self._sequence(p, response, self.buckets.teacher[-1], "teacher", index)
                    for p in self.template.teacher_prompts(example, self.tokenizer))
    student = self._sequence(self.template.student_prompt(example, self.tokenizer), response,
                             self.buckets.student[-1], "student", index)
    return Tokenized(teacher, student, len(response), example.is_ensemble, index)

  def _fit_response(self, ids: list[int], index: int) -> list[int]:
    if self.eos is not None:
      ids = ids + [self.eos]
    limit = self.buckets.response[-1]
    if len(ids) > limit:
      self._overflowed("response", index, f"{len(ids)} response tokens > largest response "
                       f"bucket {limit}; cut from the right")
      ids = ids[:limit]
    return ids

  def _sequence(self, prompt: str, response: list[int], max_len: int, side: str,
                index: int) -> np.ndarray:
    ids = self.encode(prompt)
    prefix = []
    if self.bos is not None:
      prefix = [self.bos]
      if ids and ids[0] == self.bos:  # a chat template already rendered it
        ids = ids[1:]
    room = max_len - len(prefix) - len(response)
    if len(ids) > room:
      self._overflowed(f"{side} prompt", index, f"{len(prefix) + len(ids) + len(response)} "
                       f"tokens > largest {side} bucket {max_len}; prompt cut from the left")
      ids = ids[len(ids) - room:]
    if not prefix and not ids:
      raise ValueError(f"example {index}: empty {side} prompt and no BOS token: nothing "
                       "predicts the first response token")
    return np.asarray(prefix + ids + response, np.int32)

  def _overflowed(self, kind: str, index: int, message: str) -> None:
    message = f"example {index}: {message}"
    if self.overflow == "error":
      raise ValueError(f"{message} (overflow='error')")
    self.counter.add(kind, message)


def _eos_id(tokenizer: Any, add_eos: bool | int) -> int | None:
  if add_eos is False:
    return None
  if add_eos is True:
    if tokenizer.eos_token_id is None:
      raise ValueError("add_eos=True but the tokenizer has no eos_token_id")
    return tokenizer.eos_token_id
  return int(add_eos)


# ----------------------------------------------------------------------------------------------
# Batching


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def longest(tokenizer: Any, template: Template, examples: Sequence[Example], *,
            add_bos: bool = True, add_eos: bool | int = False) -> dict[str, int]:
  """The longest teacher sequence, student sequence and response of `examples`, in tokens, as
  `Featurizer` builds them (BOS, prompt, response, EOS): what the buckets must hold."""
  unbounded = Buckets.fixed(2**31 - 1, 2**31 - 1, 2**31 - 2)
  featurize = Featurizer(tokenizer, template, unbounded, add_bos=add_bos, add_eos=add_eos)
  out = {"teacher": 0, "student": 0, "response": 0}
  for e in examples:
    t = featurize(e)
    out["teacher"] = max([out["teacher"], *(len(s) for s in t.teacher)])
    out["student"] = max(out["student"], len(t.student))
    out["response"] = max(out["response"], t.num_response)
  return out


def pad_sequences(seqs: Sequence[np.ndarray], batch: int, length: int,
                  pad_id: int = 0) -> dict[str, np.ndarray]:
  """Right-pads id sequences to [batch, length]: tokens, positions, segment_ids."""
  tokens = np.full((batch, length), pad_id, np.int32)
  positions = np.zeros((batch, length), np.int32)
  segment_ids = np.zeros((batch, length), np.int32)
  for b, seq in enumerate(seqs):
    n = len(seq)
    tokens[b, :n] = seq
    positions[b, :n] = np.arange(n)
    segment_ids[b, :n] = 1
  return {"tokens": tokens, "positions": positions, "segment_ids": segment_ids}


def response_rows(lengths: Sequence[int], num_response: Sequence[int], batch: int,
                  width: int) -> np.ndarray:
  """[batch, width] positions predicting each response token: the response fills the last
  `num_response[b]` of `lengths[b]` tokens, so row r is `lengths[b] - num_response[b] - 1 + r`."""
  rows = np.zeros((batch, width), np.int32)
  for b, (n, m) in enumerate(zip(lengths, num_response)):
    rows[b, :m] = np.arange(n - m - 1, n - 1)
  return rows


def model_inputs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The batch without its bookkeeping (`example_index`): what a jitted step takes."""
  return {k: v for k, v in batch.items() if k != "example_index"}


def collate(items: Sequence[Tokenized], buckets: Buckets, *, pad_id: int = 0,
            batch_size: int | None = None) -> dict[str, np.ndarray]:
  """Stacks `Tokenized` examples into one batch dict (see the module docstring). A short batch
  is padded with empty examples up to `batch_size` (all masked, `example_index` -1)."""
  items = list(items)
  batch = batch_size or len(items)
  if not items or len(items) > batch:
    raise ValueError(f"collate: {len(items)} items for batch size {batch}")
  ensemble, k = items[0].ensemble, len(items[0].teacher)
  if any(it.ensemble != ensemble or len(it.teacher) != k for it in items):
    raise ValueError("collate: a batch mixes ensemble sizes (len(Example.contexts))")

  tt = pick_bucket(max(len(s) for it in items for s in it.teacher), buckets.teacher)
  ts = pick_bucket(max(len(it.student) for it in items), buckets.student)
  r = pick_bucket(max(it.num_response for it in items), buckets.response)
  num_response = [it.num_response for it in items]

  teacher_seqs = [s for it in items for s in it.teacher]  # example-major, [B*K]
  teacher = pad_sequences(teacher_seqs, batch * k, tt, pad_id)
  teacher_rows = response_rows([len(s) for s in teacher_seqs], np.repeat(num_response, k),
                               batch * k, r)
  student = pad_sequences([it.student for it in items], batch, ts, pad_id)
  out = {f"teacher_{key}": v for key, v in teacher.items()}
  out["teacher_rows"] = teacher_rows
  if ensemble:
    out = {key: v.reshape(batch, k, -1) for key, v in out.items()}
  else:
    out = {key: v.reshape(batch, -1) for key, v in out.items()}
  out.update({f"student_{key}": v for key, v in student.items()})
  out["student_rows"] = response_rows([len(it.student) for it in items], num_response, batch, r)

  targets = np.zeros((batch, r), np.int32)
  row_mask = np.zeros((batch, r), np.int32)
  for b, it in enumerate(items):
    targets[b, :it.num_response] = it.response
    row_mask[b, :it.num_response] = 1
  out["targets"], out["row_mask"] = targets, row_mask
  index = np.full((batch,), -1, np.int32)
  index[:len(items)] = [it.index for it in items]
  out["example_index"] = index
  return out
