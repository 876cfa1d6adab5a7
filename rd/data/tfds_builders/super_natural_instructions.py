"""`super_natural_instructions`: Super-NaturalInstructions (Wang et al., 2022) read from a local
copy of its repository (`manual_dir`), as TFDS. Nothing is downloaded.

`manual_dir` holds the repository's layout:

  tasks/<task name>.json          one task: "Definition" (list of str), "Positive Examples"
                                  (list of {input, output, explanation}), "Instances" (list of
                                  {id, input, output: list of str}), "Categories",
                                  "Input_language", "Output_language", ...
  splits/default/train_tasks.txt  task names, one per line (the seen tasks)
  splits/default/test_tasks.txt   (the unseen tasks)

Splits: `train` (instances of the train tasks; at most `size` per task, a seeded random subset
as in Tk-Instruct; 0 = all) and `test` (the first `max_eval_instances` instances of each test
task, which the dataset orders label-balanced for evaluation, as Tk-Instruct reads them).

An instance becomes `Example(context=definition + the first k positive examples (in
`rd.tasks.task_suite`'s "Input: ...\\nOutput: ..." format), query=input, response=" " + the first
output + "\\n")`, so the suite's templates (`task_suite.TEACHER_TEMPLATE` /
`STUDENT_TEMPLATE`) fit it too. `meta` has the same keys as the suite's (task, family = the first
category, split = seen/unseen, instruction, answer) plus answers (every reference output), id,
categories and the languages.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from rd.tasks import task_suite as ts
from rd.data.examples import Example
from rd.data.tfds_builders.base import ExampleBuilder, ExampleBuilderConfig

SPLIT_FILES = {"train": "train_tasks.txt", "test": "test_tasks.txt"}


@dataclasses.dataclass(eq=False)
class SniBuilderConfig(ExampleBuilderConfig):
  """`size` = most instances per train task (0 = all); `max_eval_instances` = instances per
  test task (the first ones); `k` = positive examples in the context; `english_only` keeps
  tasks whose input and output languages are all English."""
  max_eval_instances: int = 100
  k: int = 2
  english_only: bool = False
  split_dir: str = "splits/default"


class SuperNaturalInstructions(ExampleBuilder):
  """Super-NaturalInstructions tasks with their definitions and positive examples."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  SPLITS = ("train", "test")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Clone https://github.com/allenai/natural-instructions and pass its root as manual_dir "
      "(it must hold tasks/*.json and splits/default/{train,test}_tasks.txt).")
  BUILDER_CONFIGS = [
      SniBuilderConfig(name="default", size=100, max_eval_instances=100, k=2, seed=0,
                       description="Tk-Instruct's setting: 100 instances a task, 2 positive "
                                   "examples"),
      SniBuilderConfig(name="english", size=100, max_eval_instances=100, k=2, seed=0,
                       english_only=True, description="as default, English tasks only"),
  ]
  DEFAULT_CONFIG_NAME = "default"
  builder_config: SniBuilderConfig

  def examples(self, split: str) -> Iterable[Example]:
    c = self.builder_config
    for name in read_task_names(self.manual_dir / c.split_dir / SPLIT_FILES[split]):
      task = read_task(self.manual_dir / "tasks" / f"{name}.json")
      if c.english_only and not is_english(task):
        continue
      instances = task["Instances"]
      if split == "test":
        instances = instances[:c.max_eval_instances]
      elif c.size and len(instances) > c.size:
        instances = random.Random(f"sni/{c.seed}/{name}").sample(instances, c.size)
      yield from task_examples(name, task, instances, k=c.k,
                               split="seen" if split == "train" else "unseen")


def read_task_names(path: Path) -> list[str]:
  """The task names of a split file (blank lines and a trailing ".json" ignored)."""
  if not path.exists():
    raise FileNotFoundError(f"{path}: no such split file; "
                            f"{SuperNaturalInstructions.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
  return [n.removesuffix(".json") for n in names if n]


REQUIRED = ("Definition", "Positive Examples", "Instances")


def read_task(path: Path) -> dict[str, Any]:
  """One task file, checked for the fields the builder reads."""
  if not path.exists():
    raise FileNotFoundError(f"{path}: task listed in the split file but not in tasks/")
  task = json.loads(path.read_text(encoding="utf-8"))
  missing = [f for f in REQUIRED if f not in task]
  if missing:
    raise ValueError(f"{path}: missing field(s) {missing}")
  for i, instance in enumerate(task["Instances"]):
    if not isinstance(instance.get("output"), list) or not instance["output"]:
      raise ValueError(f"{path}: instance {i}: 'output' must be a non-empty list of str")
  return task


def is_english(task: dict[str, Any]) -> bool:
  return all(lang == "English" for field in ("Input_language", "Output_language")
             for lang in task.get(field, ["English"]))


def definition(task: dict[str, Any]) -> str:
  """The task's definition (a list of strings in the files; SNI uses its first)."""
  d = task["Definition"]
  return (d[0] if isinstance(d, list) else d).strip()


def task_examples(name: str, task: dict[str, Any], instances: list[dict[str, Any]], *, k: int,
                  split: str) -> Iterator[Example]:
  shots = [(p["input"], p["output"]) for p in task["Positive Examples"][:k]]
  instruction = definition(task)
  context = ts.render_context(instruction, shots)
  categories = list(task.get("Categories", []))
  for instance in instances:
    outputs = list(instance["output"])
    yield Example(context=context, query=instance["input"],
                  response=ts.RESPONSE_FORMAT.format(output=outputs[0]),
                  meta={"task": name, "family": categories[0] if categories else "",
                        "split": split, "instruction": instruction, "answer": outputs[0],
                        "answers": outputs, "id": instance.get("id", ""),
                        "categories": categories,
                        "input_language": list(task.get("Input_language", [])),
                        "output_language": list(task.get("Output_language", []))})
