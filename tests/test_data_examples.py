"""Examples, JSONL and alpaca readers, and templates."""

import json

import pytest

from rd.data.examples import (Example, read_alpaca, read_alpaca_paired, read_jsonl,
                              split_context, write_jsonl)
from rd.data.templates import QA, Template
from tests.test_data_helpers import tiny_tokenizer


def test_jsonl_round_trip(tmp_path):
  examples = [Example("Règle: réponds en français.", "2+2?", " quatre", {"task": "fr"}),
              Example("", "q", "r", contexts=("c1", "c2"))]
  path = tmp_path / "x.jsonl"
  write_jsonl(path, examples)
  assert "Règle" in path.read_text(encoding="utf-8")  # readable, not \u-escaped
  assert read_jsonl(path) == examples


def test_jsonl_missing_field_names_file_line_and_field(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"query": "q", "response": "r"}\n\n{"context": "c", "query": "q"}\n')
  with pytest.raises(ValueError, match=r"bad\.jsonl:3: missing field 'response'"):
    read_jsonl(path)


def test_jsonl_invalid_json_and_unknown_field(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"query": "q", "response": "r"}\n{oops\n')
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
    read_jsonl(path)
  path.write_text('{"query": "q", "response": "r", "answer": 1}\n')
  with pytest.raises(ValueError, match=r"bad\.jsonl:1: unknown field\(s\) \['answer'\]"):
    read_jsonl(path)


def test_example_rejects_non_strings():
  with pytest.raises(TypeError, match="Example.query"):
    Example("c", 3, "r")
  assert Example("c", "q", "r", contexts=["a", "b"]).contexts == ("a", "b")


def _write(path, records):
  path.write_text(json.dumps(records))
  return path


def test_read_alpaca(tmp_path):
  path = _write(tmp_path / "a.json", [
      {"instruction": "Add.", "input": "2 3", "output": "5", "rule": "Be brief.", "id": 7},
      {"instruction": "Say hi.", "output": "hi", "rule": ""}])
  plain = read_alpaca(path)
  assert [e.query for e in plain] == ["Add.\n\n2 3", "Say hi."]
  assert [e.response for e in plain] == ["5", "hi"]
  assert plain[0].context == "" and plain[0].meta["id"] == 7 and plain[0].meta["record"] == 0
  with_rule = read_alpaca(path, context_field="rule")
  assert with_rule[0].context == "Be brief." and "rule" not in with_rule[0].meta


def test_read_alpaca_jsonl_and_missing_output(tmp_path):
  path = tmp_path / "a.jsonl"
  path.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
  with pytest.raises(ValueError, match=r"a\.jsonl:2: missing field 'output'"):
    read_alpaca(path)


def test_split_context():
  assert split_context("Rule: be brief.\nSum 2 and 3.", "Sum 2 and 3.") == "Rule: be brief."
  assert split_context("Sum 2 and 3. Rule: be brief.", "Sum 2 and 3.") == "Rule: be brief."
  assert split_context("A\nQ\nB", "Q") == "A\nB"
  assert split_context("Rule.", "") == "Rule."
  assert split_context("Rule. Sum 2 and 3.", "Add 2 and 3.") is None


def test_read_alpaca_paired(tmp_path):
  with_rule = _write(tmp_path / "with.json", [
      {"instruction": "Rule: answer in capitals.\nName a colour.", "input": "", "output": "RED"},
      {"instruction": "Translate.", "input": "Rule: keep it short.\nhello there", "output": "hi"}])
  without = _write(tmp_path / "without.json", [
      {"instruction": "Name a colour.", "input": "", "output": "RED"},
      {"instruction": "Translate.", "input": "hello there", "output": "hi"}])
  a, b = read_alpaca_paired(with_rule, without)
  assert (a.context, a.query, a.response) == ("Rule: answer in capitals.", "Name a colour.", "RED")
  assert a.meta["teacher_prompt"] == "Rule: answer in capitals.\nName a colour."
  # The rule sits in the input field: still found, since whole prompts are compared.
  assert (b.context, b.query) == ("Rule: keep it short.", "Translate.\n\nhello there")


def test_read_alpaca_paired_errors(tmp_path):
  with_rule = _write(tmp_path / "with.json", [{"instruction": "Rule. Add 2+3.", "output": "5"}])
  rephrased = _write(tmp_path / "re.json", [{"instruction": "Sum 2 and 3.", "output": "5"}])
  with pytest.raises(ValueError, match="record 0 .*not part of the with-context prompt"):
    read_alpaca_paired(with_rule, rephrased)
  (full,) = read_alpaca_paired(with_rule, rephrased, on_mismatch="full")
  assert (full.context, full.query) == ("Rule. Add 2+3.", "Sum 2 and 3.")
  other = _write(tmp_path / "o.json", [{"instruction": "Add 2+3.", "output": "6"}])
  with pytest.raises(ValueError, match="outputs differ"):
    read_alpaca_paired(with_rule, other)
  two = _write(tmp_path / "two.json", [{"instruction": "Add 2+3.", "output": "5"}] * 2)
  with pytest.raises(ValueError, match="differ in length"):
    read_alpaca_paired(with_rule, two)


def test_template_render():
  e = Example(context='Data: {"a": 1}', query="what is a?", response=" 1")
  assert QA.teacher_prompts(e) == ('Data: {"a": 1}\n\nQuestion: what is a?\nAnswer:',)
  assert QA.student_prompt(e) == "Question: what is a?\nAnswer:"
  ens = Example("", "q", "r", contexts=("c1", "c2", "c3"))
  assert Template().teacher_prompts(ens) == ("c1\n\nq", "c2\n\nq", "c3\n\nq")


def test_template_validation():
  with pytest.raises(ValueError, match="unknown placeholder"):
    Template(teacher="{rule} {query}")
  with pytest.raises(ValueError, match="must contain {query}"):
    Template(student="{context}")
  assert Template(teacher="{{literal}} {context} {query}").teacher_prompts(
      Example("c", "q", "r")) == ("{literal} c q",)


def test_template_chat_mode():
  tok = tiny_tokenizer(chat=True)
  t = Template(teacher="{context}\n{query}", student="{query}", chat=True)
  e = Example("Rule.", "Q?", " A")
  assert t.student_prompt(e, tok) == "<bos><user>Q?</user><assistant>"
  assert t.teacher_prompts(e, tok) == ("<bos><user>Rule.\nQ?</user><assistant>",)
  with_system = Template(chat=True, system="Be nice.").student_prompt(e, tok)
  assert with_system.startswith("<bos><system>Be nice.</system><user>")
  with pytest.raises(ValueError, match="chat_template"):
    t.student_prompt(e, tiny_tokenizer())
