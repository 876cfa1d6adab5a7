r"""Rule tasks for rule distillation (Yang et al.): invented rules, in paired alpaca files.

A rule is a small transformation a model cannot guess from the input alone ("a # b means b
followed by a", "add the letter x to the end of the word"). Each record asks for the rule's
output on one input; the with-rule record's `instruction` starts with the rule (its text plus
a few worked examples: Gemma 3 270M follows none of these rules from the text alone, see
`MEASURED`), the without-rule record is the same record without it, so
`rd.data.examples.read_alpaca_paired` gives `Example(context=<rule block>, query=<task
instruction>\n\n<input>, response=" <answer>\n")`.

Per rule, `write_rule_tasks` writes to `<out>/<rule>/`:

  train_k{K}_with_rule.json / train_k{K}_without_rule.json   K = 4, 8, 16, 32: nested, the
                                                             first K of one shuffled list
  test_id_with_rule.json / test_id_without_rule.json         inputs from the training range
  test_ood_with_rule.json / test_ood_without_rule.json       inputs from a range never seen in
                                                             training (longer words, bigger
                                                             numbers)

and `<out>/manifest.json` ({rule: {"context", "splits": {split: "paired:WITH,WITHOUT"}}}).
The worked examples, the training inputs and both test sets are disjoint. Everything is a
deterministic function of `RuleTaskConfig` (seed included).

  python -m rd.tasks.rule_tasks --out /tmp/rules
  python -m rd.tasks.rule_tasks --out /tmp/rules --rules add_x,swap_words --n_test 32 --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from rd.data.examples import read_alpaca_paired

RESPONSE_FORMAT = " {answer}\n"  # the record's `output`: the answer line the templates end at
# How the job renders an `Example` of these files (the prompt ends where the response starts).
TEACHER_TEMPLATE = "{context}\n\n{query}\nOutput:"
STUDENT_TEMPLATE = "{query}\nOutput:"

# Common short words (3-5 letters): the in-distribution inputs of the word rules.
SHORT_WORDS = tuple("""
ant ape arm art axe bag bat bed bee bell belt bird boat bone book boot bowl box boy bread
brick bus cake camel cap car card cat chair chalk cheek chin clay cloud coat coin comb cook
corn cow crab crow cup desk dish dog doll door dove drum duck dust ear egg elk eye fan farm
fig fish flag flame fly foam fork fox frog gate gift girl glass glove goat gold grape grass
gum hand hat hawk hen hill hook horn horse house ink iron jam jar jeep key kite knee knife
lake lamb lamp leaf leg lemon lid lion lock map mask milk mint moon moth mouse mud mug nail
nest net nose nut oak owl pan pear pen pig pipe plum pond pot rain rat ring road rock roof
rope rose rug salt sand seed sheep ship shoe silk sky snow sock sofa spoon star stem stone
sun swan table tent tiger toe tooth towel toy tree truck tulip van vase wall web whale wheel
wind wolf wool worm yak zoo
""".split())

# Long words (8-11 letters): the out-of-distribution inputs of the word rules.
LONG_WORDS = tuple("""
adventure airplane alligator ambulance apartment astronaut avocado backpack badminton
basketball blueberry breakfast butterfly calculator calendar cardboard caterpillar chocolate
classroom crocodile cucumber dandelion detective dinosaur dolphin doorknob dragonfly
elephant envelope fireplace firework flamingo football fountain furniture giraffe grapefruit
grasshopper guitarist hamburger harmonica hedgehog helicopter horseshoe hurricane iceberg
jellyfish kangaroo keyboard ladybug landscape lighthouse lollipop magazine magnifier
marshmallow microphone mushroom notebook octopus orchestra ostrich paintbrush pancake
parachute passenger peacock pineapple playground porcupine pumpkin raincoat raspberry
sandwich saxophone scarecrow scorpion seahorse shoelace skeleton snowflake spaceship
squirrel staircase strawberry submarine sunflower telephone telescope thermometer
toothbrush tortoise treasure triangle umbrella vegetable volcano waterfall watermelon
wheelbarrow windmill woodpecker
""".split())


@dataclasses.dataclass(frozen=True)
class Rule:
  """One invented rule. `kind` picks the inputs ("word", "word_pair", "number_pair");
  `apply` maps an input tuple (one word, two words, or two ints) to the answer text."""
  name: str
  text: str
  instruction: str  # the task instruction both prompts share (the rule is not in it)
  kind: str
  apply: Callable[[tuple], str]

  def render(self, item: tuple) -> str:
    """The record's `input`: what the rule is applied to."""
    if self.kind == "number_pair":
      return f"{item[0]} # {item[1]}"
    return " ".join(item)


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("add_x", "Rule: add the letter x to the end of the word.",
         "Apply the rule to the word.", "word", lambda it: it[0] + "x"),
    Rule("repeat", "Rule: write the word twice, separated by a space.",
         "Apply the rule to the word.", "word", lambda it: f"{it[0]} {it[0]}"),
    Rule("swap_words", "Rule: swap the two words.",
         "Apply the rule to the two words.", "word_pair", lambda it: f"{it[1]} {it[0]}"),
    Rule("concat_ba", "Rule: a # b means the digits of b followed by the digits of a.",
         "Compute the expression.", "number_pair", lambda it: f"{it[1]}{it[0]}"),
    Rule("twice_plus", "Rule: a # b means 2 * a + b.",
         "Compute the expression.", "number_pair", lambda it: str(2 * it[0] + it[1])),
    Rule("reverse_x", "Rule: reverse the word, then add the letter x to the end.",
         "Apply the rule to the word.", "word", lambda it: it[0][::-1] + "x"),
)}

# Greedy exact match of Gemma 3 270M (base, float32) on 32 test inputs per split (seed 0,
# TEACHER_TEMPLATE / STUDENT_TEMPLATE, 3 worked examples, max 10 new tokens), measured before
# choosing the default rules: {rule: (teacher ID, teacher OOD)}. The base without the rule
# scored 0.0 on every one of them. With the rule text alone (no worked examples) the teacher
# scored <= 0.06 on every rule (16 inputs, an earlier prompt layout): the 270M base model needs
# the examples. twice_plus and reverse_x: 0.0 with examples too (same earlier layout).
MEASURED = {
    "add_x": (1.0, 0.906),
    "repeat": (1.0, 0.969),
    "swap_words": (0.906, 0.562),
    "concat_ba": (0.062, None),
    "twice_plus": (0.0, 0.0),
    "reverse_x": (0.0, 0.0),
}

# The rules the job runs by default: ones the 270M teacher follows with its examples.
DEFAULT_RULES = ("add_x", "swap_words")


@dataclasses.dataclass(frozen=True)
class RuleTaskConfig:
  rules: tuple[str, ...] = DEFAULT_RULES
  ks: tuple[int, ...] = (4, 8, 16, 32)
  n_test: int = 64  # per test split
  n_shots: int = 3  # worked examples in the rule block
  id_numbers: tuple[int, int] = (1, 20)
  ood_numbers: tuple[int, int] = (21, 99)
  seed: int = 0

  def __post_init__(self):
    unknown = sorted(set(self.rules) - set(RULES))
    if unknown or not self.rules:
      raise ValueError(f"RuleTaskConfig.rules: unknown or empty {unknown}; choose from "
                       f"{sorted(RULES)}")
    if not self.ks or min(self.ks) < 1 or list(self.ks) != sorted(set(self.ks)):
      raise ValueError(f"RuleTaskConfig.ks must be increasing positive sizes, got {self.ks}")
    if self.n_test < 1 or self.n_shots < 0:
      raise ValueError("RuleTaskConfig: n_test must be >= 1 and n_shots >= 0")
    (a, b), (c, d) = self.id_numbers, self.ood_numbers
    if not (0 <= a <= b < c <= d):
      raise ValueError("RuleTaskConfig: id_numbers and ood_numbers must be increasing, "
                       f"disjoint ranges, got {self.id_numbers} and {self.ood_numbers}")


# ----------------------------------------------------------------------------------------------
# Inputs


def _pool(kind: str, ood: bool, config: RuleTaskConfig) -> list[tuple]:
  """Every possible input of a kind, in a fixed order."""
  if kind == "number_pair":
    lo, hi = config.ood_numbers if ood else config.id_numbers
    return [(a, b) for a in range(lo, hi + 1) for b in range(lo, hi + 1) if a != b]
  words = LONG_WORDS if ood else SHORT_WORDS
  if kind == "word":
    return [(w,) for w in words]
  return [(a, b) for a in words for b in words if a != b]


def _parts(item: tuple) -> set:
  """What two splits must not share: the words of a word input, or the number pair itself."""
  return set(item) if isinstance(item[0], str) else {item}


def _draw(rng: random.Random, pool: Sequence[tuple], n: int, used: set, what: str) -> list[tuple]:
  """`n` distinct inputs from `pool` sharing no word (no pair, for numbers) with `used`; their
  words are then added to `used`, so later splits never reuse a word of this one."""
  free = [item for item in pool if not _parts(item) & used]
  if len(free) < n:
    raise ValueError(f"not enough distinct inputs for {what}: asked for {n}, have {len(free)}; "
                     "lower n_test or the largest k")
  picked = rng.sample(free, n)
  for item in picked:
    used |= _parts(item)
  return picked


def rule_block(rule: Rule, shots: Sequence[tuple]) -> str:
  """The rule as the teacher sees it: its text, then worked examples in the prompt's layout."""
  lines = [rule.text]
  if shots:
    lines.append("Examples:")
    lines += [f"{rule.render(s)}\nOutput: {rule.apply(s)}" for s in shots]
  return "\n".join(lines)


def records(rule: Rule, context: str, items: Sequence[tuple], split: str
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """Paired alpaca records (with the rule block, without it) for `items`; identical but for
  the rule block at the start of `instruction`."""
  with_rule, without_rule = [], []
  for item in items:
    record = {"instruction": rule.instruction, "input": rule.render(item),
              "output": RESPONSE_FORMAT.format(answer=rule.apply(item)), "rule": rule.name,
              "split": split}
    without_rule.append(record)
    with_rule.append({**record, "instruction": f"{context}\n\n{rule.instruction}"})
  return with_rule, without_rule


def make_rule_splits(rule: Rule, config: RuleTaskConfig) -> tuple[str, dict[str, list[tuple]]]:
  """The rule block and the inputs of every split: train_k{K} (nested), test_id, test_ood."""
  rng = random.Random(f"{config.seed}:{rule.name}")
  used: set = set()
  id_pool = _pool(rule.kind, False, config)
  shots = _draw(rng, id_pool, config.n_shots, used, f"{rule.name} worked examples")
  train = _draw(rng, id_pool, max(config.ks), used, f"{rule.name} training")
  splits = {f"train_k{k}": train[:k] for k in config.ks}
  splits["test_id"] = _draw(rng, id_pool, config.n_test, used, f"{rule.name} test_id")
  splits["test_ood"] = _draw(rng, _pool(rule.kind, True, config), config.n_test, set(),
                             f"{rule.name} test_ood")
  return rule_block(rule, shots), splits


def _write_json(path: str, value: Any) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1, ensure_ascii=False)
    f.write("\n")


def write_rule_tasks(out: str, config: RuleTaskConfig = RuleTaskConfig()) -> dict[str, Any]:
  """Writes every rule's paired files and `manifest.json` under `out`; returns the manifest."""
  manifest = {"config": dataclasses.asdict(config), "rules": {}}
  for name in config.rules:
    rule = RULES[name]
    context, splits = make_rule_splits(rule, config)
    directory = os.path.join(out, name)
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for split, items in splits.items():
      with_rule, without_rule = records(rule, context, items, split)
      pair = [os.path.join(directory, f"{split}_{side}.json")
              for side in ("with_rule", "without_rule")]
      _write_json(pair[0], with_rule)
      _write_json(pair[1], without_rule)
      paths[split] = "paired:" + ",".join(pair)
    manifest["rules"][name] = {"text": rule.text, "context": context, "kind": rule.kind,
                               "splits": paths}
  _write_json(os.path.join(out, "manifest.json"), manifest)
  return manifest


# ----------------------------------------------------------------------------------------------
# The paper's released layout (Yang et al.): one directory per rule, paired alpaca JSON files.

# The Stanford Alpaca prompt, which the paper's files are written for: the rule part (what the
# with-rule file adds) and the without-rule prompt go in the instruction.
ALPACA_TEACHER_TEMPLATE = ("Below is an instruction that describes a task. Write a response "
                           "that appropriately completes the request.\n\n### Instruction:\n"
                           "{context}\n\n{query}\n\n### Response:\n")
ALPACA_STUDENT_TEMPLATE = ("Below is an instruction that describes a task. Write a response "
                           "that appropriately completes the request.\n\n### Instruction:\n"
                           "{query}\n\n### Response:\n")


def paper_files(directory: str, ks: Sequence[int]) -> dict[str, tuple[str, str]]:
  """(with-rule, without-rule) file of every split a rule directory in the paper's layout holds:
  `train_k{k}` from `train_{full,no}_{k}shot.json`, `test_id` / `test_ood` from
  `test_{full,no}_{id,ood}.json`, and `valid` from the lowest-seed `valid_{full,no}_seed*.json`
  when there is one. Raises `FileNotFoundError` naming a missing file."""
  pairs = {f"train_k{k}": (f"train_full_{k}shot.json", f"train_no_{k}shot.json") for k in ks}
  pairs.update(test_id=("test_full_id.json", "test_no_id.json"),
               test_ood=("test_full_ood.json", "test_no_ood.json"))
  seeds = sorted(int(m[1]) for f in os.listdir(directory)
                 if (m := re.fullmatch(r"valid_full_seed(\d+)\.json", f)))
  if seeds:
    pairs["valid"] = (f"valid_full_seed{seeds[0]}.json", f"valid_no_seed{seeds[0]}.json")
  out = {}
  for split, names in pairs.items():
    paths = tuple(os.path.join(directory, n) for n in names)
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f"{missing[0]} is missing (split {split} of the paper's layout)")
    out[split] = paths
  return out


def paper_entry(directory: str, ks: Sequence[int]) -> dict[str, Any]:
  """A rule directory in the paper's layout as the job's manifest entry: its splits as
  `paired:` sources and the rule part of its first training example."""
  files = paper_files(directory, ks)
  first = read_alpaca_paired(*files[f"train_k{min(ks)}"])[0]
  return {"text": first.context, "context": first.context, "kind": "paper",
          "splits": {split: "paired:" + ",".join(paths) for split, paths in files.items()}}


def write_paper_layout(out: str, config: RuleTaskConfig = RuleTaskConfig()) -> list[str]:
  """rd's rules written in the paper's layout, one directory per rule (what a user's own data
  looks like); returns the directories."""
  directories = []
  for name in config.rules:
    rule = RULES[name]
    context, splits = make_rule_splits(rule, config)
    directory = os.path.join(out, name)
    os.makedirs(directory, exist_ok=True)
    names = {f"train_k{k}": f"train_{{}}_{k}shot.json" for k in config.ks}
    names.update(test_id="test_{}_id.json", test_ood="test_{}_ood.json")
    for split, items in splits.items():
      with_rule, without_rule = records(rule, context, items, split)
      _write_json(os.path.join(directory, names[split].format("full")), with_rule)
      _write_json(os.path.join(directory, names[split].format("no")), without_rule)
    directories.append(directory)
  return directories


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m rd.tasks.rule_tasks",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="directory for <rule>/*.json + manifest")
  parser.add_argument("--rules", default=",".join(DEFAULT_RULES),
                      help=f"comma-separated, from {sorted(RULES)}")
  parser.add_argument("--ks", default="4,8,16,32", help="training sizes (nested)")
  parser.add_argument("--n_test", type=int, default=RuleTaskConfig.n_test)
  parser.add_argument("--n_shots", type=int, default=RuleTaskConfig.n_shots)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  try:
    config = RuleTaskConfig(rules=tuple(args.rules.split(",")),
                            ks=tuple(int(k) for k in args.ks.split(",")), n_test=args.n_test,
                            n_shots=args.n_shots, seed=args.seed)
    manifest = write_rule_tasks(args.out, config)
  except ValueError as e:
    parser.error(str(e))
  for name, entry in manifest["rules"].items():
    print(f"{name}: {len(entry['splits'])} splits in {os.path.join(args.out, name)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
