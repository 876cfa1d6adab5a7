"""Super-NaturalInstructions builder: reads the repository's own layout from a manual_dir
(`tests/data/sni`: three invented tasks in the real `tasks/*.json` format), offline."""

import json
import os
import shutil

import pytest

from rd.tasks import task_suite as ts
from rd.data.tfds_builders import (SuperNaturalInstructions, config_with, load_examples,
                                   prepare)

SNI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sni")


def _task(name):
  with open(os.path.join(SNI, "tasks", f"{name}.json"), encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def _load(split, data_dir, **changes):
  config = config_with(SuperNaturalInstructions.config_named("default"), **changes)
  return load_examples("super_natural_instructions", split, data_dir, config=config,
                       manual_dir=SNI)


def test_train_and_test_splits_follow_the_split_files(data_dir):
  train = _load("train", data_dir)
  test = _load("test", data_dir)
  assert [e.meta["task"] for e in train] == (["task901_fake_word_reversal"] * 5 +
                                             ["task902_fake_spanish_number_words"] * 3)
  assert {e.meta["split"] for e in train} == {"seen"}
  assert [e.meta["task"] for e in test] == ["task903_fake_antonym_generation"] * 4
  assert {e.meta["split"] for e in test} == {"unseen"}


def test_an_instance_becomes_definition_shots_input_and_first_output(data_dir):
  test = _load("test", data_dir)
  raw = _task("task903_fake_antonym_generation")
  first = test[0]
  definition = raw["Definition"][0]
  shots = [(p["input"], p["output"]) for p in raw["Positive Examples"][:2]]  # default k = 2
  assert first.context == ts.render_context(definition, shots)
  assert first.context.startswith(definition + "\n\nInput: hot\nOutput: cold\n\nInput: tall")
  assert "happy" not in first.context  # the third positive example is beyond k
  assert (first.query, first.response) == ("big", " small\n")
  assert first.meta == {
      "task": "task903_fake_antonym_generation", "family": "Word Semantics", "split": "unseen",
      "instruction": definition, "answer": "small", "answers": ["small", "little"],
      "id": "task903-0000", "categories": ["Word Semantics", "Antonym Generation"],
      "input_language": ["English"], "output_language": ["English"]}
  prompt = ts.TEACHER_TEMPLATE.format(context=first.context, query=first.query)
  assert prompt.endswith("Output: short\n\nInput: big\nOutput:")


def test_sizes_k_and_english_only(data_dir):
  train = _load("train", data_dir, size=2, seed=1)
  per_task = {}
  for e in train:
    per_task.setdefault(e.meta["task"], []).append(e.meta["id"])
  assert {t: len(ids) for t, ids in per_task.items()} == {
      "task901_fake_word_reversal": 2, "task902_fake_spanish_number_words": 2}
  all_ids = [i["id"] for i in _task("task901_fake_word_reversal")["Instances"]]
  assert set(per_task["task901_fake_word_reversal"]) <= set(all_ids)
  assert _load("train", data_dir, size=2, seed=1) == train  # seeded: the same subset again
  assert [e.meta["id"] for e in _load("test", data_dir, max_eval_instances=3)] == [
      "task903-0000", "task903-0001", "task903-0002"]  # the first ones, as Tk-Instruct reads
  k0 = _load("test", data_dir, k=0)
  assert k0[0].context == _task("task903_fake_antonym_generation")["Definition"][0]
  english = _load("train", data_dir, english_only=True)
  assert {e.meta["task"] for e in english} == {"task901_fake_word_reversal"}


def test_missing_files_fail_with_a_clear_message(tmp_path):
  manual = tmp_path / "sni"
  shutil.copytree(SNI, manual)
  (manual / "tasks" / "task903_fake_antonym_generation.json").unlink()
  config = config_with(SuperNaturalInstructions.config_named("default"), seed=7)
  with pytest.raises(FileNotFoundError, match="task903_fake_antonym_generation.json"):
    prepare("super_natural_instructions", data_dir=tmp_path / "tfds", config=config,
            manual_dir=manual)
  with pytest.raises(AssertionError, match="allenai/natural-instructions"):  # TFDS's check
    prepare("super_natural_instructions", data_dir=tmp_path / "tfds2", config=config)
