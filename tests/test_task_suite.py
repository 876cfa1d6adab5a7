"""The generated task suite: its shape, determinism, answers, Examples and the TFDS builder."""

import collections
import random

import pytest

from rd.tasks import task_suite as ts
from rd.tasks import task_words as tw
from rd.data.tfds_builders import RdTaskSuite, config_with, load_examples

# What the TFDS builder's default config draws per task: k shots + train + test instances.
SEEN_NEED, UNSEEN_NEED = 3 + 32 + 16, 3 + 16


def test_the_suite_has_enough_tasks_and_a_seen_unseen_split_per_family():
  assert len(ts.TASKS) >= 60
  splits = collections.Counter(t.split for t in ts.TASKS.values())
  assert set(splits) == set(ts.SPLITS)
  assert 0.2 <= splits["unseen"] / len(ts.TASKS) <= 0.35
  for family in ts.families():
    assert ts.task_names("seen", family) and ts.task_names("unseen", family), family
  for task in ts.TASKS.values():
    assert task.instruction[0].isupper() and task.instruction[-1] in ".?", task.name
    assert 1 <= task.instruction.count(".") + task.instruction.count("?") <= 2, task.name
  assert len({t.instruction for t in ts.TASKS.values()}) == len(ts.TASKS)


@pytest.mark.parametrize("name", list(ts.TASKS))
def test_every_task_draws_distinct_short_single_line_instances(name):
  task = ts.TASKS[name]
  need = SEEN_NEED if task.split == "seen" else UNSEEN_NEED
  instances = task.sample(random.Random(0), need)
  assert len({x for x, _ in instances}) == need
  for x, y in instances:
    assert x and y and "\n" not in x + y
    assert y == y.strip() and len(y) <= 30
    assert ts.is_correct(f" {y}\nInput: more", y)


def test_instances_are_deterministic_and_prefixes_of_longer_draws():
  for name in ("antonym", "record_city", "count_up"):
    shots, first = ts.draw(name, 10, k=3, seed=5)
    assert ts.draw(name, 10, k=3, seed=5) == (shots, first)
    shots2, longer = ts.draw(name, 20, k=3, seed=5)
    assert shots2 == shots and longer[:10] == first
    _, skipped = ts.draw(name, 10, k=3, seed=5, skip=10)
    assert skipped == longer[10:]
    assert ts.draw(name, 10, k=3, seed=6) != (shots, first)


def test_answers_follow_the_rules():
  check = {
      "first_letter": lambda x, y: y == x[0],
      "reverse_list": lambda x, y: y.split(", ") == x.split(", ")[::-1],
      "sum_of_three": lambda x, y: int(y) == sum(int(v) for v in x.split(", ")),
      "multiply_numbers": lambda x, y: int(y) == int(x.split(", ")[0]) * int(x.split(", ")[1]),
      "add_hundred": lambda x, y: int(y) == int(x) + 100,
      "even_or_odd": lambda x, y: y == ("even" if int(x) % 2 == 0 else "odd"),
      "larger_number": lambda x, y: int(y) == max(int(v) for v in x.split(", ")),
      "word_to_number": lambda x, y: tw.number_word(int(y)) == x,
      "date_dmy": lambda x, y: y.split("/") == x.split("-")[::-1],
      "record_age": lambda x, y: f"age: {y}" in x,
      "step_down": lambda x, y: (lambda v: v[0] - v[1] == v[1] - v[2] == v[2] - int(y))(
          [int(s) for s in x.split(", ")]),
      "singular_noun": lambda x, y: tw.plural(y) == x,
      "animal_or_fruit": lambda x, y: x in (tw.ANIMALS if y == "animal" else tw.FRUITS),
  }
  for name, rule in check.items():
    for x, y in ts.TASKS[name].sample(random.Random(1), 40):
      assert rule(x, y), (name, x, y)
  for task in ts.TASKS.values():  # two-label tasks stay balanced over a builder-sized draw
    labels = collections.Counter(y for _, y in task.sample(random.Random(2), UNSEEN_NEED))
    if len(labels) == 2:
      assert min(labels.values()) >= 0.3 * UNSEEN_NEED, (task.name, labels)


def test_the_lexicon_is_consistent():
  assert tw.number_word(0) == "zero" and tw.number_word(42) == "forty-two"
  assert tw.number_word(90) == "ninety"
  assert [tw.plural(w) for w in ("city", "box", "wolf", "monkey", "child")] == [
      "cities", "boxes", "wolves", "monkeys", "children"]
  words = [w for pair in tw.ANTONYMS for w in pair]
  assert len(words) == len(set(words))  # every word has one opposite
  assert not set(tw.COLORS) & set(tw.FRUITS)
  assert len(set(tw.WORDS)) == len(tw.WORDS)


def test_examples_carry_instruction_shots_and_answer():
  examples = ts.task_examples("capital_of_country", 4, k=2, seed=0)
  shots, instances = ts.draw("capital_of_country", 4, k=2, seed=0)
  e = examples[0]
  assert e.context == ("Write the capital city of the country.\n\n"
                       f"Input: {shots[0][0]}\nOutput: {shots[0][1]}\n\n"
                       f"Input: {shots[1][0]}\nOutput: {shots[1][1]}")
  assert (e.query, e.response) == (instances[0][0], f" {instances[0][1]}\n")
  assert e.meta == {"task": "capital_of_country", "family": "lexical", "split": "seen",
                    "instruction": "Write the capital city of the country.",
                    "answer": instances[0][1]}
  assert all(x.context == e.context for x in examples)  # the shots are fixed per task
  assert ts.task_examples("capital_of_country", 2, k=0)[0].context == ts.TASKS[
      "capital_of_country"].instruction
  prompt = ts.TEACHER_TEMPLATE.format(context=e.context, query=e.query)
  assert prompt.endswith(f"Output: {shots[1][1]}\n\nInput: {e.query}\nOutput:")
  with pytest.raises(KeyError, match="unknown task"):
    ts.task_examples("no_such_task", 1)


def test_is_correct_is_exact():
  assert ts.is_correct("  HOUSE \nInput: x", "HOUSE")
  assert not ts.is_correct("house", "HOUSE")
  assert not ts.is_correct("Smith John", "Smith, John")
  assert not ts.is_correct("", "a")


def test_tfds_builder_splits(tmp_path):
  config = config_with(RdTaskSuite.config_named("default"), size=4)
  config = config_with(config, test_size=2)
  load = lambda split: load_examples("rd_task_suite", split, tmp_path, config=config)  # noqa
  train, test_seen, test_unseen, tasks = (load(s) for s in RdTaskSuite.SPLITS)
  seen, unseen = ts.task_names("seen"), ts.task_names("unseen")
  assert len(train) == 4 * len(seen) and len(test_seen) == 2 * len(seen)
  assert len(test_unseen) == 2 * len(unseen) and len(tasks) == len(ts.TASKS)
  assert {e.meta["task"] for e in train} == set(seen) == {e.meta["task"] for e in test_seen}
  assert {e.meta["task"] for e in test_unseen} == set(unseen)
  assert train[:4] == ts.task_examples(seen[0], 4, k=3, seed=0)
  assert test_seen[:2] == ts.task_examples(seen[0], 2, k=3, seed=0, skip=4)
  train_inputs = {(e.meta["task"], e.query) for e in train}
  assert not train_inputs & {(e.meta["task"], e.query) for e in test_seen}
  first = tasks[0]
  assert first.context == train[0].context and first.query == ""
  assert first.meta["instruction"] == ts.TASKS[seen[0]].instruction
  assert len(first.meta["shots"]) == 3
