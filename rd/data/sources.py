"""Where a job's examples come from, named by one string (the `data.train` / `data.eval` field).

  train.jsonl                     {context, query, response} records (`read_jsonl`)
  train.json                      alpaca records: instruction, input, output (`read_alpaca`)
  paired:with_rule.json,without.json   paired alpaca files (`read_alpaca_paired`)
  tfds:rd_facts/small:train       a split of one of rd's TFDS builders (prepared on first use)
"""

from __future__ import annotations

import os

from rd.data.examples import Example, read_alpaca, read_alpaca_paired, read_jsonl


def _paths(source: str) -> list[str]:
  if source.startswith("tfds:"):
    return []
  if source.startswith("paired:"):
    return source[len("paired:"):].split(",")
  return [source]


def check(source: str) -> str | None:
  """A problem with `source` (one line), or None. Cheap: looks at names and paths only."""
  if source.startswith("tfds:") and source.count(":") != 2:
    return f"{source!r}: write tfds:NAME[/CONFIG]:SPLIT, e.g. tfds:rd_facts/small:train"
  if source.startswith("paired:") and len(_paths(source)) != 2:
    return f"{source!r}: write paired:WITH_CONTEXT.json,WITHOUT_CONTEXT.json"
  missing = [p for p in _paths(source) if not os.path.exists(p)]
  if missing:
    return f"{missing[0]!r} does not exist"
  if not source.startswith(("tfds:", "paired:")) and not source.endswith((".jsonl", ".json")):
    return f"{source!r}: expected a .jsonl or .json file, paired:A.json,B.json or tfds:NAME:SPLIT"
  return None


def load(source: str) -> list[Example]:
  """Reads every example of `source` (see the module docstring for the forms)."""
  problem = check(source)
  if problem:
    raise ValueError(problem)
  if source.startswith("tfds:"):
    from rd.data.tfds_builders import load_examples  # TFDS only when asked for
    _, name, split = source.split(":")
    return load_examples(name, split)
  if source.startswith("paired:"):
    return read_alpaca_paired(*_paths(source))
  return read_jsonl(source) if source.endswith(".jsonl") else read_alpaca(source)
