"""Data sources named by one string: JSONL, alpaca JSON, paired alpaca files."""

import json

import pytest

from rd.data import sources
from rd.data.examples import Example, write_jsonl


def test_jsonl_alpaca_and_paired_sources(tmp_path):
  write_jsonl(tmp_path / "a.jsonl", [Example(context="c", query="q", response="r")])
  assert sources.load(str(tmp_path / "a.jsonl"))[0].query == "q"
  with_rule = [{"instruction": "Rule: reverse the word. Reverse it.", "input": "abc", "output": "cba"}]
  without = [{"instruction": "Reverse it.", "input": "abc", "output": "cba"}]
  (tmp_path / "with.json").write_text(json.dumps(with_rule))
  (tmp_path / "without.json").write_text(json.dumps(without))
  assert sources.load(str(tmp_path / "without.json"))[0].response == "cba"
  paired = sources.load(f"paired:{tmp_path / 'with.json'},{tmp_path / 'without.json'}")
  assert paired[0].context.strip() == "Rule: reverse the word." and paired[0].response == "cba"


@pytest.mark.parametrize("source, words", [
    ("/no/such.jsonl", "does not exist"),
    ("tfds:rd_facts", "tfds:NAME[/CONFIG]:SPLIT"),
    ("paired:only_one.json", "paired:WITH_CONTEXT.json,WITHOUT_CONTEXT.json"),
])
def test_bad_sources_are_named(source, words):
  assert words in sources.check(source)
  with pytest.raises(ValueError, match="does not exist|tfds:NAME|paired:WITH"):
    sources.load(source)


def test_tfds_source_prepares_and_reads_without_network(tmp_path, monkeypatch):
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path))
  train = sources.load("tfds:rd_facts/small:train")
  assert len(train) > 24 * 4 and train[0].context and train[0].response.strip()
  assert sources.check("tfds:rd_facts/small:test") is None
