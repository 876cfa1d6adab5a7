r"""How well a base model does each task of the generated suite with the instruction and k
worked examples in its prompt (greedy, exact match): the check that a task is learnable.

  python -m launch.task_suite_eval --out=/tmp/suite_eval.json
  python -m launch.task_suite_eval --tasks=first_word,antonym --n=16 --k=3

Prints one row per task and one per family (seen / unseen tasks apart) and writes the same
numbers, with every prediction, to --out (JSON).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "gemma3-270m", "Model path (HF directory, .gguf) or the default.")
flags.DEFINE_list("tasks", [], "Task names (default: the whole suite).")
flags.DEFINE_integer("n", 16, "Instances per task.")
flags.DEFINE_integer("k", 3, "Worked examples in the prompt.")
flags.DEFINE_integer("seed", 0, "Suite seed.")
flags.DEFINE_integer("skip", 0, "Instances of each task's stream passed over first.")
flags.DEFINE_integer("batch_size", 16, "Generation batch.")
flags.DEFINE_integer("max_new_tokens", 12, "Tokens generated per answer.")
flags.DEFINE_string("out", "", "Write the results here (JSON).")


def task_accuracy(base, tokenizer, names: Sequence[str], *, n: int, k: int, seed: int = 0,
                  skip: int = 0, batch_size: int = 16,
                  max_new_tokens: int = 12) -> dict[str, dict[str, Any]]:
  """{task: {"exact_match", "n", "family", "split", "predictions"}} for the teacher prompt
  (instruction + k shots + input), greedy, scored with `task_suite.is_correct`."""
  from rd import evaluate  # pylint: disable=import-outside-toplevel
  from rd.tasks import task_suite as ts  # pylint: disable=import-outside-toplevel
  teacher = lambda e: ts.TEACHER_TEMPLATE.format(context=e.context, query=e.query)  # noqa: E731
  out = {}
  for name in names:
    examples = ts.task_examples(name, n, k=k, seed=seed, skip=skip)
    r = evaluate.answer_accuracy(base, None, tokenizer, examples, teacher,
                                 max_new_tokens=max_new_tokens, batch_size=batch_size)
    right = [ts.is_correct(p["prediction"], p["answer"]) for p in r["predictions"]]
    task = ts.TASKS[name]
    out[name] = {"exact_match": sum(right) / len(right), "n": len(right),
                 "family": task.family, "split": task.split,
                 "predictions": [{**p, "exact_match": ok}
                                 for p, ok in zip(r["predictions"], right)]}
  return out


def family_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
  """[family, split, tasks, mean exact match %, tasks at 0 %] per (family, split)."""
  groups: dict[tuple[str, str], list[float]] = {}
  for r in results.values():
    groups.setdefault((r["family"], r["split"]), []).append(r["exact_match"])
  return [[family, split, str(len(ems)), f"{100 * sum(ems) / len(ems):.1f}",
           str(sum(em == 0 for em in ems))] for (family, split), ems in groups.items()]


def main(argv):
  del argv
  from rd.tasks import task_suite as ts  # pylint: disable=import-outside-toplevel
  from rd.metrics import format_table  # pylint: disable=import-outside-toplevel
  from rd.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  from rd.weights.load import load_model  # pylint: disable=import-outside-toplevel
  names = FLAGS.tasks or list(ts.TASKS)
  unknown = [t for t in names if t not in ts.TASKS]
  if unknown:
    raise app.UsageError(f"--tasks: unknown task(s) {unknown}")
  base, tokenizer = load_model(FLAGS.model), load_tokenizer(FLAGS.model)
  results = {}
  for name in names:  # one at a time, so progress shows in the log
    results.update(task_accuracy(base, tokenizer, [name], n=FLAGS.n, k=FLAGS.k,
                                 seed=FLAGS.seed, skip=FLAGS.skip,
                                 batch_size=FLAGS.batch_size,
                                 max_new_tokens=FLAGS.max_new_tokens))
    r = results[name]
    print(f"{name:24s} {r['family']:18s} {r['split']:7s} {100 * r['exact_match']:5.1f}",
          flush=True)
  print(format_table([[name, r["family"], r["split"], f"{100 * r['exact_match']:.1f}"]
                      for name, r in results.items()],
                     ["task", "family", "split", "exact match %"]))
  print(format_table(family_rows(results), ["family", "split", "tasks", "mean EM %",
                                            "tasks at 0"]))
  if FLAGS.out:
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      json.dump({"n": FLAGS.n, "k": FLAGS.k, "seed": FLAGS.seed, "skip": FLAGS.skip,
                 "model": FLAGS.model, "tasks": results}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
