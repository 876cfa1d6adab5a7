"""Segment-wise tokenization, batch layout, truncation, ensembles and packing."""

import numpy as np
import pytest

from rd.tasks import addition
from rd.data.examples import Example
from rd.data.packing import pack, pack_batch
from rd.data.templates import QA, Template
from rd.data.tokenize import Buckets, Featurizer, collate, pick_bucket
from tests.test_data_helpers import random_examples, tiny_tokenizer

BUCKETS = Buckets(teacher=(16, 32, 64, 128), student=(16, 32, 64), response=(4, 8, 16, 32))


def featurize(examples, template=QA, buckets=BUCKETS, batch_size=None, **kw):
  f = Featurizer(tiny_tokenizer(kw.pop("chat", False)), template, buckets, **kw)
  items = [f(e, i) for i, e in enumerate(examples)]
  return f, collate(items, buckets, pad_id=f.pad_id, batch_size=batch_size)


def check_rows(batch):
  """The invariant every loss relies on, for every real row."""
  teacher_tokens, teacher_rows = batch["teacher_tokens"], batch["teacher_rows"]
  if teacher_tokens.ndim == 2:
    teacher_tokens, teacher_rows = teacher_tokens[:, None], teacher_rows[:, None]
  student_index = batch.get("student_row_index", np.arange(len(batch["targets"])))
  n = 0
  for b, r in zip(*np.nonzero(batch["row_mask"])):
    target = batch["targets"][b, r]
    for k in range(teacher_tokens.shape[1]):
      assert teacher_tokens[b, k, teacher_rows[b, k, r] + 1] == target
    assert batch["student_tokens"][student_index[b], batch["student_rows"][b, r] + 1] == target
    n += 1
  return n


def test_rows_point_at_identical_response_ids():
  examples = random_examples(40, seed=1)
  _, batch = featurize(examples)
  assert check_rows(batch) == batch["row_mask"].sum() > 40
  assert all(v.dtype == np.int32 for v in batch.values())
  b, tt = batch["teacher_tokens"].shape
  assert b == 40 and tt in BUCKETS.teacher
  assert batch["student_tokens"].shape[1] in BUCKETS.student
  assert batch["targets"].shape == batch["row_mask"].shape == batch["student_rows"].shape
  assert batch["targets"].shape[1] in BUCKETS.response


def test_layout_bos_positions_segments_and_targets():
  tok = tiny_tokenizer()
  e = Example("Rule: always answer in French.", "what is two plus two?", " four")
  _, batch = featurize([e], add_eos=True)
  response = tok.encode(" four", add_special_tokens=False) + [tok.eos_token_id]
  prompt = tok.encode(QA.student_prompt(e), add_special_tokens=False)
  n = 1 + len(prompt) + len(response)
  np.testing.assert_array_equal(batch["student_tokens"][0, :n],
                                [tok.bos_token_id] + prompt + response)
  np.testing.assert_array_equal(batch["student_positions"][0, :n], np.arange(n))
  ts = batch["student_tokens"].shape[1]
  assert batch["student_segment_ids"][0].tolist() == [1] * n + [0] * (ts - n)
  assert (batch["student_tokens"][0, n:] == tok.pad_token_id).all()
  m = len(response)
  np.testing.assert_array_equal(batch["targets"][0, :m], response)
  np.testing.assert_array_equal(batch["student_rows"][0, :m], np.arange(n - m - 1, n - 1))
  assert batch["row_mask"][0].tolist() == [1] * m + [0] * (4 - m)
  assert batch["example_index"].tolist() == [0]


def test_response_is_tokenized_on_its_own():
  # "Answer: four" joined may merge differently from "Answer:" + " four"; we never join.
  tok = tiny_tokenizer()
  e = Example("ctx", "q", "four")
  _, batch = featurize([e], template=Template(teacher="{context} {query} Answer:",
                                              student="{query} Answer:"))
  m = batch["row_mask"][0].sum()
  assert batch["targets"][0, :m].tolist() == tok.encode("four", add_special_tokens=False)


def test_chat_mode_does_not_double_bos():
  t = Template(teacher="{context}\n{query}", student="{query}", chat=True)
  _, batch = featurize([Example("Rule.", "Q?", " A")], template=t, chat=True)
  tokens = batch["student_tokens"][0]
  assert tokens[0] == 1 and tokens[1] != 1
  check_rows(batch)


def test_long_prompt_is_cut_from_the_left_keeping_bos_and_response():
  tok = tiny_tokenizer()
  long_context = " ".join(["the quick brown fox"] * 40)
  e = Example(long_context, "what?", " the cat sat")
  f, batch = featurize([e])
  assert batch["teacher_tokens"].shape[1] == 128  # the largest teacher bucket, full
  assert batch["teacher_tokens"][0, 0] == tok.bos_token_id
  assert batch["teacher_segment_ids"][0].all()
  prompt_end = tok.encode(QA.teacher_prompts(e)[0], add_special_tokens=False)[-5:]
  m = batch["row_mask"][0].sum()
  assert batch["teacher_tokens"][0, 128 - m - 5:128 - m].tolist() == prompt_end
  check_rows(batch)
  assert f.counter.counts == {"teacher prompt": 1}
  with pytest.raises(ValueError, match="example 0: .*largest teacher bucket 128"):
    featurize([e], overflow="error")


def test_long_response_is_cut_from_the_right():
  tok = tiny_tokenizer()
  response = " " + " ".join(["dog"] * 50)
  f, batch = featurize([Example("c", "q", response)])
  assert batch["row_mask"][0].sum() == 32
  assert batch["targets"][0].tolist() == tok.encode(response, add_special_tokens=False)[:32]
  assert f.counter.counts["response"] == 1
  check_rows(batch)


def test_ensemble_shapes_and_rows():
  examples = random_examples(6, seed=2, k=3)
  _, batch = featurize(examples)
  b, k, tt = batch["teacher_tokens"].shape
  assert (b, k) == (6, 3) and batch["teacher_rows"].shape == (6, 3, batch["targets"].shape[1])
  assert batch["teacher_segment_ids"].shape == (6, 3, tt)
  assert batch["student_tokens"].ndim == 2
  check_rows(batch)
  # Each of the K sequences is that context's own prompt.
  tok = tiny_tokenizer()
  ids = tok.encode(QA.teacher_prompts(examples[0])[2], add_special_tokens=False)
  assert batch["teacher_tokens"][0, 2, 1:1 + len(ids)].tolist() == ids


def test_mixed_ensemble_batch_is_rejected():
  with pytest.raises(ValueError, match="mixes ensemble sizes"):
    featurize(random_examples(2, k=2) + random_examples(2))


def test_short_batch_is_padded_with_masked_examples():
  _, batch = featurize(random_examples(3), batch_size=5)
  assert batch["teacher_tokens"].shape[0] == 5
  assert batch["example_index"].tolist() == [0, 1, 2, -1, -1]
  assert not batch["row_mask"][3:].any() and not batch["student_segment_ids"][3:].any()


def test_buckets():
  assert pick_bucket(17, (16, 32)) == 32 and pick_bucket(16, (16, 32)) == 16
  with pytest.raises(ValueError, match="exceeds the largest bucket"):
    pick_bucket(33, (16, 32))
  assert Buckets(teacher=(64, 16, 32), response=(8,)).teacher == (16, 32, 64)
  with pytest.raises(ValueError, match="largest response bucket"):
    Buckets(teacher=(64,), student=(32,), response=(32,))
  fixed = Buckets.fixed(128, 64, 32)
  _, batch = featurize(random_examples(4), buckets=fixed)
  assert batch["teacher_tokens"].shape == (4, 128) and batch["student_tokens"].shape == (4, 64)
  assert batch["targets"].shape == (4, 32)


def test_pack_matches_unpacked_content():
  _, batch = featurize(random_examples(12, seed=3), batch_size=14)  # 2 padding examples
  s = {k: batch[f"student_{k}"] for k in ("tokens", "positions", "segment_ids", "rows")}
  packed = pack(s["tokens"], s["positions"], s["segment_ids"], s["rows"], num_rows=9,
                length=64)
  lengths = (s["segment_ids"] > 0).sum(1)
  seen = set()
  for b in range(12):
    p, rows = packed["row_index"][b], packed["rows"][b]
    offset = rows[0] - s["rows"][b, 0]
    span = slice(offset, offset + lengths[b])
    np.testing.assert_array_equal(packed["tokens"][p, span], s["tokens"][b, :lengths[b]])
    np.testing.assert_array_equal(packed["positions"][p, span], np.arange(lengths[b]))
    segment = packed["segment_ids"][p, span]
    assert (segment == segment[0]).all() and segment[0] >= 1 and (p, segment[0]) not in seen
    seen.add((p, segment[0]))
  assert (packed["segment_ids"] > 0).sum() == lengths.sum()
  assert check_rows(pack_batch(batch, num_rows=9, length=64)) == batch["row_mask"].sum()


def test_pack_segments_count_up_and_overflow_raises():
  tokens = np.array([[5, 6, 0, 0], [7, 0, 0, 0], [8, 9, 9, 0]], np.int32)
  segments = (tokens > 0).astype(np.int32)
  positions = np.where(segments, np.arange(4), 0).astype(np.int32)
  rows = np.zeros((3, 1), np.int32)
  out = pack(tokens, positions, segments, rows, num_rows=2)
  assert out["tokens"].tolist() == [[5, 6, 7, 0], [8, 9, 9, 0]]
  assert out["segment_ids"].tolist() == [[1, 1, 2, 0], [1, 1, 1, 0]]
  assert out["positions"].tolist() == [[0, 1, 0, 0], [0, 1, 2, 0]]
  assert out["row_index"].tolist() == [0, 0, 1] and out["rows"][:, 0].tolist() == [0, 2, 0]
  with pytest.raises(ValueError, match="do not fit"):
    pack(tokens, positions, segments, rows, num_rows=1)


@pytest.mark.parametrize("make", [tiny_tokenizer, addition.char_tokenizer])
def test_fast_encode_gives_the_tokenizers_own_ids(make):
  tok = make()
  featurizer = Featurizer(tok, QA, BUCKETS)
  assert featurizer._backend is not None  # pylint: disable=protected-access
  texts = ["12+345=", " leading space", "two\nlines\n", "trailing ", "<bos>x<eos>", "ünï ✓",
           "Question: who?\nAnswer:", "0123456789+=,;"]
  for text in texts:
    assert featurizer.encode(text) == list(tok.encode(text, add_special_tokens=False)), text


def test_encode_without_a_fast_backend_uses_the_tokenizer():
  class Plain:  # any object with encode() and the special ids
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def encode(self, text, add_special_tokens=False):
      return [ord(ch) for ch in text]
  featurizer = Featurizer(Plain(), QA, BUCKETS)
  assert featurizer.encode("ab") == [97, 98] and featurizer.encode("") == []
