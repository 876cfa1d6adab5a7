"""Rule tasks: paired alpaca files that pair up, nested k-shot splits, disjoint ID/OOD tests."""

import json
import os

import pytest

from rd.data import sources
from rd.tasks import rule_tasks
from rd.data.examples import read_alpaca_records

ALL = rule_tasks.RuleTaskConfig(rules=tuple(rule_tasks.RULES), n_test=16)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
  return rule_tasks.write_rule_tasks(str(tmp_path_factory.mktemp("rules")), ALL)


def _paths(source):
  return source[len("paired:"):].split(",")


def test_paired_files_differ_only_by_the_rule_block(manifest):
  for name, entry in manifest["rules"].items():
    rule = rule_tasks.RULES[name]
    assert entry["context"].startswith(rule.text + "\nExamples:\n")
    assert entry["context"].count("\nOutput: ") == ALL.n_shots
    for split, source in entry["splits"].items():
      with_rule, without_rule = map(read_alpaca_records, _paths(source))
      assert len(with_rule) == len(without_rule) > 0
      for w, wo in zip(with_rule, without_rule):
        assert w["instruction"] == f"{entry['context']}\n\n{wo['instruction']}"
        assert {**w, "instruction": wo["instruction"]} == wo
        assert wo["split"] == split and wo["rule"] == name
      # The engine's reader recovers the rule block as the context, and the templates render
      # the with-rule record's prompt for the teacher and the without-rule one for the student.
      for e, wo in zip(sources.load(source), without_rule):
        assert e.context == entry["context"]
        assert e.query == f"{wo['instruction']}\n\n{wo['input']}"
        assert e.response == wo["output"] == f" {e.response.strip()}\n"
        assert (rule_tasks.TEACHER_TEMPLATE.format(context=e.context, query=e.query)
                == e.meta["teacher_prompt"] + "\nOutput:")
        assert rule_tasks.STUDENT_TEMPLATE.format(query=e.query) == e.query + "\nOutput:"


def test_answers_follow_each_rule(manifest):
  expected = {"add_x": ("ink", "inkx"), "repeat": ("ink", "ink ink"),
              "swap_words": ("red cat", "cat red"), "concat_ba": ("12 # 7", "712"),
              "twice_plus": ("12 # 7", "31"), "reverse_x": ("ink", "knix")}
  assert set(expected) == set(rule_tasks.RULES)
  for name, (text, answer) in expected.items():
    rule = rule_tasks.RULES[name]
    item = tuple(int(x) for x in text.split(" # ")) if "#" in text else tuple(text.split())
    assert rule.render(item) == text and rule.apply(item) == answer
  for name, entry in manifest["rules"].items():
    for r in read_alpaca_records(_paths(entry["splits"]["test_id"])[1]):
      text = r["input"]
      item = tuple(int(x) for x in text.split(" # ")) if "#" in text else tuple(text.split())
      assert r["output"] == f" {rule_tasks.RULES[name].apply(item)}\n"


def _inputs(source):
  return [r["input"] for r in read_alpaca_records(_paths(source)[1])]


def test_splits_are_nested_disjoint_and_ood_is_out_of_range(manifest):
  for name, entry in manifest["rules"].items():
    splits = {s: _inputs(src) for s, src in entry["splits"].items()}
    trains = [splits[f"train_k{k}"] for k in ALL.ks]
    assert [len(t) for t in trains] == list(ALL.ks)
    assert all(big[:len(small)] == small for small, big in zip(trains, trains[1:]))
    assert len(splits["test_id"]) == len(splits["test_ood"]) == ALL.n_test
    shots = [line for line in entry["context"].split("\n")[2::2]]
    kind = rule_tasks.RULES[name].kind
    parts = ((lambda s: {s}) if kind == "number_pair" else (lambda s: set(s.split())))
    seen = [set().union(*map(parts, xs)) for xs in (shots, trains[-1], splits["test_id"])]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2]), name
    for split in ("test_id", "test_ood"):
      assert len(set(splits[split])) == ALL.n_test
    if kind == "number_pair":
      numbers = lambda xs: {int(n) for x in xs for n in x.split(" # ")}  # noqa: E731
      assert max(numbers(trains[-1] + splits["test_id"] + shots)) <= ALL.id_numbers[1]
      assert min(numbers(splits["test_ood"])) >= ALL.ood_numbers[0]
    else:
      longest_id = max(len(w) for x in trains[-1] + splits["test_id"] for w in x.split())
      assert min(len(w) for x in splits["test_ood"] for w in x.split()) > longest_id


def test_deterministic_from_the_seed(tmp_path):
  config = rule_tasks.RuleTaskConfig(rules=("add_x", "concat_ba"), n_test=8)
  a = rule_tasks.write_rule_tasks(str(tmp_path / "a"), config)
  b = rule_tasks.write_rule_tasks(str(tmp_path / "b"), config)
  c = rule_tasks.write_rule_tasks(str(tmp_path / "c"),
                                  rule_tasks.RuleTaskConfig(rules=("add_x", "concat_ba"),
                                                            n_test=8, seed=1))
  for name in config.rules:
    for split in a["rules"][name]["splits"]:
      assert _inputs(a["rules"][name]["splits"][split]) == _inputs(
          b["rules"][name]["splits"][split])
    assert _inputs(a["rules"][name]["splits"]["test_id"]) != _inputs(
        c["rules"][name]["splits"]["test_id"])


def test_cli_writes_the_files_and_rejects_bad_input(tmp_path, capsys):
  out = str(tmp_path / "cli")
  assert rule_tasks.main(["--out", out, "--rules", "repeat", "--ks", "2,4", "--n_test", "5"]) == 0
  with open(os.path.join(out, "manifest.json")) as f:
    manifest = json.load(f)
  assert sorted(manifest["rules"]["repeat"]["splits"]) == ["test_id", "test_ood", "train_k2",
                                                            "train_k4"]
  assert len(os.listdir(os.path.join(out, "repeat"))) == 8
  for argv, message in ((["--rules", "nope"], "RuleTaskConfig.rules"),
                        (["--ks", "8,4"], "RuleTaskConfig.ks"),
                        (["--n_test", "100000"], "not enough distinct inputs")):
    with pytest.raises(SystemExit):
      rule_tasks.main(["--out", out, *argv])
    assert message in capsys.readouterr().err
