"""The composed-distillation task: its splits, determinism, and why retrieval misses it."""

import pytest

from rd import retrieval
from rd.tasks import composed_tasks as tasks


def test_splits_are_deterministic_and_consistent():
  cfg = tasks.TaskConfig(num_items=20, train_lexical=1, train_per_item=2, heldout_per_item=2,
                         seed=3)
  task = tasks.make_task(cfg)
  assert task == tasks.make_task(cfg)
  assert task["examples"] != tasks.make_task(tasks.TaskConfig(num_items=20, seed=4))["examples"]
  examples, train, test = task["examples"], task["train"], task["test"]
  assert [len(examples), len(train), len(test)] == [20, 60, 40]
  assert len({e.meta["answer"] for e in examples}) == 20  # every answer belongs to one item
  assert len({e.meta["country"] for e in examples}) == 20
  for q in train + test:
    item = examples[q.meta["item"]]
    assert q.context == item.context == tasks.example_text(item.meta["country"],
                                                            item.meta["answer"])
    assert q.response == f" {item.meta['answer']}\n" and q.meta["answer"] == item.meta["answer"]
    assert item.meta["answer"] not in q.query
  lexical = [q for q in train if q.meta["form"] == "lexical"]
  assert len(lexical) == 20 and all(q.query in q.context for q in lexical)
  train_wordings = {q.query for q in train}
  for q in test:
    words = q.query.rstrip("?.").split()
    assert q.query not in train_wordings
    assert q.meta["demonym"] in words and q.meta["country"] not in words


def test_word_lists_hold_what_the_task_needs():
  countries = [c for c, _ in tasks.COUNTRIES]
  demonyms = [d for _, d in tasks.COUNTRIES]
  assert len(set(countries)) == len(countries) and len(set(demonyms)) == len(demonyms)
  assert all(c.lower() != d.lower() for c, d in tasks.COUNTRIES)
  assert len(set(tasks.CODENAMES)) == len(tasks.CODENAMES)
  assert not set(tasks.CODENAMES) & set(countries + demonyms)


def test_bm25_finds_the_example_from_its_own_question_but_not_from_a_nationality():
  task = tasks.make_task(tasks.TaskConfig(num_items=32, heldout_per_item=1))
  retriever = retrieval.Retriever([e.context for e in task["examples"]])
  def top1(questions):
    return sum(retriever.top(q.query, 1)[0] == q.meta["item"] for q in questions) / len(questions)

  assert top1([q for q in task["train"] if q.meta["form"] == "lexical"]) == 1.0
  assert top1(task["test"]) <= 0.1  # chance is 1/32: "French" is not "France"


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_items=0), "num_items"), (dict(num_items=10_000), "num_items"),
    (dict(train_lexical=2), "train_lexical"), (dict(train_per_item=9), "train_per_item"),
    (dict(train_lexical=0, train_per_item=0), "no training query"),
    (dict(heldout_per_item=0), "heldout_per_item")])
def test_bad_task_config(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tasks.TaskConfig(**kwargs)
