"""`rd_task_suite`: the generated multi-task suite (`rd.tasks.task_suite`) as TFDS.

Splits:
  train        seen tasks, instances 0 .. size-1 of each task's stream
  test_seen    seen tasks, the next `test_size` instances (disjoint from train)
  test_unseen  unseen tasks, `test_size` instances each (tasks never in train)
  tasks        one example per task, both splits: context = instruction + shots, no query

Every example's context is the task's instruction and its `k` worked examples (the same for
every instance of a task); `meta` names the task, family and split and holds the instruction
and the answer. Config `default`: 32 training and 16 test instances per task, k = 3, seed 0;
`config_with(RdTaskSuite.config_named("default"), size=48)` or
`python -m rd.data.tfds_builders rd_task_suite --size 48` for others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import tensorflow_datasets as tfds

from rd.tasks import task_suite as ts
from rd.data.examples import Example
from rd.data.tfds_builders.base import ExampleBuilder, ExampleBuilderConfig


@dataclasses.dataclass(eq=False)
class TaskSuiteBuilderConfig(ExampleBuilderConfig):
  """`size` = training instances per seen task; `test_size` = test instances per task;
  `k` = worked examples in each context."""
  test_size: int = 16
  k: int = 3


class RdTaskSuite(ExampleBuilder):
  """rd's generated tasks with natural-language instructions (see `rd.tasks.task_suite`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  SPLITS = ("train", "test_seen", "test_unseen", "tasks")
  BUILDER_CONFIGS = [TaskSuiteBuilderConfig(name="default", size=32, test_size=16, k=3, seed=0,
                                            description="32 train / 16 test instances a task")]
  DEFAULT_CONFIG_NAME = "default"
  builder_config: TaskSuiteBuilderConfig

  def examples(self, split: str) -> Iterable[Example]:
    c = self.builder_config
    if split == "tasks":
      return [task_example(name, k=c.k, seed=c.seed) for name in ts.TASKS]
    if split == "train":
      names, n, skip = ts.task_names("seen"), c.size, 0
    elif split == "test_seen":
      names, n, skip = ts.task_names("seen"), c.test_size, c.size
    else:
      names, n, skip = ts.task_names("unseen"), c.test_size, 0
    return [e for name in names
            for e in ts.task_examples(name, n, k=c.k, seed=c.seed, skip=skip)]


def task_example(name: str, *, k: int, seed: int) -> Example:
  """A task as one example: its context (instruction + shots), no query or response."""
  task = ts.TASKS[name]
  shots, _ = ts.draw(name, 0, k=k, seed=seed)
  return Example(context=ts.render_context(task.instruction, shots), query="", response="",
                 meta={"task": name, "family": task.family, "split": task.split,
                       "instruction": task.instruction, "shots": [list(s) for s in shots]})
