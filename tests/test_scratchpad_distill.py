"""Addition data (scratch-pads, answers, the char tokenizer) and the scratch-pad job end to end."""

import json
import random

import pytest

from configs.scratchpad_distill import get_config
from rd import job as job_lib
from rd.methods.context_distill import scratchpad as scratchpad_distill
from rd.config import ConfigError
from rd.tasks import addition


def _columns_sum(pad: str) -> int:
  """Reads the sum back from a scratch-pad: the s digit of every column, plus the last carry."""
  steps = pad.rstrip(addition.SCRATCH_END).rstrip(",").split(",")
  digits = [int(step[3]) for step in steps] + [int(steps[-1][2])]
  return sum(d * 10 ** i for i, d in enumerate(digits))


def test_scratch_pad_columns_and_answers_are_right():
  rng = random.Random(0)
  for a, b in addition.problems(rng, 500):
    pad = addition.scratch_pad(a, b)
    assert len(pad.split(",")) - 1 == max(len(str(a)), len(str(b)))
    assert _columns_sum(pad) == a + b
    assert int(addition.answer(a, b)[::-1]) == a + b
    full = addition.scratch_example(a, b).response
    assert addition.parse_answer(full, scratch=True) == addition.answer(a, b)
  assert addition.scratch_pad(345, 78) + addition.answer(345, 78) == "5813,4712,3004,;324"
  assert addition.parse_answer("5813,47", scratch=True) == ""  # no answer yet


def test_padded_formats_give_every_problem_the_same_columns():
  rng = random.Random(2)
  for name in ("padded", "reversed"):
    fmt = addition.format_named(name)
    for a, b in addition.problems(rng, 200):
      assert len(addition.query(a, b, fmt)) == 18
      pad = addition.scratch_pad(a, b, fmt)
      assert len(pad) == 8 * 5 + 1 and _columns_sum(pad) == a + b
      full = addition.scratch_example(a, b, fmt).response
      assert addition.parse_answer(full, scratch=True) == addition.answer(a, b)
  padded, reversed_ = addition.format_named("padded"), addition.format_named("reversed")
  assert addition.query(345, 78, padded) == "00000345+00000078="
  assert addition.query(345, 78, reversed_) == "54300000+87000000="
  assert addition.direct_example(345, 78, reversed_).response == "324"  # answers: unpadded
  assert addition.distill_example(345, 78, addition.scratch_pad(345, 78, padded) + "324",
                                  padded).query == "00000345+00000078="


def test_problems_are_distinct_cover_every_length_and_respect_exclusions():
  rng = random.Random(1)
  test = addition.problems(rng, 2000)
  train = addition.problems(rng, 2000, exclude=set(test))
  assert len(set(test)) == 2000 and not set(test) & set(train)
  assert {len(str(a)) for a, _ in test} == set(range(1, 9))


def test_distill_example_uses_the_teachers_own_answer():
  wrong = addition.scratch_pad(12, 9) + "13"  # the teacher's scratch-pad, a wrong answer
  e = addition.distill_example(12, 9, wrong)
  assert (e.query, e.context, e.response) == ("12+9=", addition.scratch_pad(12, 9), "13")
  assert e.meta["answer"] == "12"
  assert addition.distill_example(12, 9, "1910,") is None  # unfinished: nothing to distill


def test_char_tokenizer_round_trips_one_token_per_character():
  tok = addition.char_tokenizer()
  text = "345+78=5813,4712,3004,;324"
  ids = tok.encode(text)
  assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
  assert tok.decode(ids[1:]) == text
  assert len(tok) == addition.model_config()["vocab_size"]


@pytest.mark.slow  # five trainings and their compilations: ~1.5 min on an idle 2-core machine
def test_job_runs_end_to_end(tmp_path):
  c = get_config("tiny")
  results = job_lib.run(scratchpad_distill, c, str(tmp_path))
  systems = results["systems"]
  assert set(systems) == {"teacher (scratch-pad)", "student before (direct)",
                          "student after distillation (direct)",
                          "baseline: direct-answer fine-tuning",
                          "baseline: scratch-pad then direct"}
  assert all(r["n"] == c.task.test_problems and 0 <= r["accuracy"] <= 1
             for r in systems.values())
  for name in ("scratchpad/model/config.json", "distill/lora/adapter.json",
               "direct/model/config.json", "scratchpad_then_direct/lora/adapter.json"):
    assert (tmp_path / name).exists(), name
  with open(tmp_path / "distill.jsonl") as f:  # teacher-made pairs: scratch-pad as context
    pairs = [json.loads(line) for line in f]
  assert pairs and all(p["context"].endswith(addition.SCRATCH_END) for p in pairs)
  width = c.task.max_digits  # the tiny preset pads operands, as the experiment does
  assert all(len(p["query"]) == 2 * width + 2 for p in pairs)
  assert results["config"]["task"]["format"] == "reversed"


def test_bad_task_fails_before_any_work():
  c = get_config("tiny")
  c.task.max_digits = 9
  with pytest.raises(ConfigError, match="task.max_digits"):
    scratchpad_distill.validate(c)
  c = get_config("tiny")
  c.task.update(max_digits=1, test_problems=100)
  with pytest.raises(ConfigError, match="distinct problems"):
    scratchpad_distill.validate(c)
  c = get_config("tiny")
  c.task.format = "lsb"
  with pytest.raises(ConfigError, match="task.format"):
    scratchpad_distill.validate(c)
