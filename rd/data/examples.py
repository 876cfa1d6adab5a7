"""`Example`: every distillation method's data, plus JSONL and alpaca-style JSON readers.

A method is an `Example(context, query, response)` plus two templates (see `templates.py`):
the teacher sees the context and the query, the student sees the query; both are scored on the
same response tokens.

* `context`: the text the student must internalize (a rule, instructions, a document, worked
  examples). May be "" (SFT baselines, or a teacher that differs only by its LoRA).
* `contexts`: for a *K-context ensemble* teacher (composed, simultaneous distillation), the K
  contexts whose teacher distributions are averaged. Empty for the usual single-context case;
  when non-empty it replaces `context` for the teacher (`teacher_contexts`), and `context` is
  kept only as a human-readable note (e.g. "" or the shared part).
* `meta`: anything else (source file, record number, task name); never tokenized.

On disk, one JSON object per line (`write_jsonl` / `read_jsonl`):
`{"context": str, "query": str, "response": str, "meta": {...}, "contexts": [str, ...]}`;
`query` and `response` are required, the rest default to empty.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class Example:
  context: str
  query: str
  response: str
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  contexts: tuple[str, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "contexts", tuple(self.contexts))
    for name in ("context", "query", "response"):
      if not isinstance(getattr(self, name), str):
        raise TypeError(f"Example.{name} must be a str, got {type(getattr(self, name)).__name__}")
    if not all(isinstance(c, str) for c in self.contexts):
      raise TypeError("Example.contexts must be a sequence of str")

  @property
  def teacher_contexts(self) -> tuple[str, ...]:
    """The contexts the teacher is run on: K for an ensemble, else just `context`."""
    return self.contexts or (self.context,)

  @property
  def is_ensemble(self) -> bool:
    return bool(self.contexts)

  def to_json(self) -> dict[str, Any]:
    record = {"context": self.context, "query": self.query, "response": self.response,
              "meta": dict(self.meta)}
    if self.contexts:
      record["contexts"] = list(self.contexts)
    return record


# ----------------------------------------------------------------------------------------------
# JSONL


def example_from_record(record: Any, where: str) -> Example:
  """Builds an `Example` from one decoded JSON object; `where` names it in errors."""
  if not isinstance(record, dict):
    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
  for name in ("query", "response"):
    if name not in record:
      raise ValueError(f"{where}: missing field {name!r} (have {sorted(record)})")
  unknown = sorted(set(record) - {"context", "query", "response", "meta", "contexts"})
  if unknown:
    raise ValueError(f"{where}: unknown field(s) {unknown}")
  try:
    return Example(context=record.get("context", ""), query=record["query"],
                   response=record["response"], meta=record.get("meta") or {},
                   contexts=tuple(record.get("contexts") or ()))
  except TypeError as e:
    raise ValueError(f"{where}: {e}") from None


def read_jsonl(path: PathLike) -> list[Example]:
  """Reads one `Example` per non-blank line; errors name the file, line and field."""
  examples = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{os.fspath(path)}:{lineno}"
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
      examples.append(example_from_record(record, where))
  return examples


def write_text(path: PathLike, text: str) -> None:
  """Writes `path` atomically (a temporary file, then a rename; parent directories made): a
  crash never leaves half a file that a rerun would trust."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{os.fspath(path)}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def write_jsonl(path: PathLike, examples: Iterable[Example]) -> None:
  """Writes one JSON object per line, UTF-8 kept readable (no \\u escapes), atomically."""
  write_text(path, "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n"
                           for e in examples))


def read_json(path: PathLike) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_json(path: PathLike, value: Any) -> None:
  """Writes `value` as indented JSON, atomically (`write_text`)."""
  write_text(path, json.dumps(value, indent=2, default=str))


# ----------------------------------------------------------------------------------------------
# Alpaca-style JSON: records with "instruction", optional "input", and "output".

ALPACA_FIELDS = ("instruction", "input", "output")


def alpaca_prompt(instruction: str, input_: str = "") -> str:
  """The query text of an alpaca record: the instruction, then the input if there is one."""
  return f"{instruction}\n\n{input_}" if input_ else instruction


def read_alpaca_records(path: PathLike) -> list[dict[str, Any]]:
  """A JSON list of records, or one record per line (JSONL); checks the alpaca fields."""
  name = os.fspath(path)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if text.lstrip().startswith("["):
    try:
      records = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"{name}: invalid JSON at line {e.lineno} ({e.msg})") from None
    wheres = [f"{name}: record {i}" for i in range(len(records))]
  else:
    records, wheres = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ValueError(f"{name}:{lineno}: invalid JSON ({e.msg})") from None
        wheres.append(f"{name}:{lineno}")
  for record, where in zip(records, wheres):
    if not isinstance(record, dict):
      raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in ("instruction", "output"):
      if field not in record:
        raise ValueError(f"{where}: missing field {field!r} (have {sorted(record)})")
  return records


def _alpaca_meta(record: Mapping[str, Any], path: PathLike, index: int, drop=()) -> dict:
  extra = {k: v for k, v in record.items() if k not in ALPACA_FIELDS and k not in drop}
  return {"source": os.fspath(path), "record": index, **extra}


def read_alpaca(path: PathLike, *, context_field: str | None = None) -> list[Example]:
  """Alpaca records as `Example(context=record[context_field] or "", query=instruction+input,
  response=output)`. Other fields of a record go to `meta`."""
  examples = []
  for i, r in enumerate(read_alpaca_records(path)):
    context = ""
    if context_field is not None:
      if context_field not in r:
        raise ValueError(f"{os.fspath(path)}: record {i}: missing field {context_field!r}")
      context = r[context_field]
    examples.append(Example(context=context,
                            query=alpaca_prompt(r["instruction"], r.get("input", "")),
                            response=r["output"],
                            meta=_alpaca_meta(r, path, i, drop=(context_field,))))
  return examples


def split_context(with_context: str, without_context: str) -> str | None:
  """The part of `with_context` that is not `without_context`, or None if the latter is not
  a substring. E.g. ("Rule: be brief.\\nSum 2 and 3.", "Sum 2 and 3.") -> "Rule: be brief."."""
  at = with_context.find(without_context) if without_context else 0
  if at < 0:
    return None
  before, after = with_context[:at], with_context[at + len(without_context):]
  return "\n".join(p.strip() for p in (before, after) if p.strip())


def _paired_context(with_record: Mapping[str, Any],
                    without_record: Mapping[str, Any]) -> str | None:
  """The rule part of a pair: what the with-context record adds to `instruction` and to `input`
  (either may hold it), joined; None if a without-context field is not part of its partner."""
  parts = [split_context(with_record.get(f, ""), without_record.get(f, ""))
           for f in ("instruction", "input")]
  if None in parts:
    return None
  return "\n".join(p for p in parts if p)


def read_alpaca_paired(with_context_path: PathLike, without_context_path: PathLike, *,
                       on_mismatch: str = "error") -> list[Example]:
  """The paired layout of rule-distillation datasets: two files with the same records, where
  the with-context file's prompt holds the rule (anywhere in `instruction` or `input`) and the
  without-context file's does not.

  Each pair becomes `Example(context=<rule part>, query=<without-context prompt>,
  response=output)`, where prompt = instruction + "\\n\\n" + input, and the rule part is what
  the with-context record adds to its partner: field by field (`instruction`, then `input`),
  the without-context text is cut out of the with-context text (`split_context`) and the
  remainders are joined. The student template thus renders exactly the dataset's without-rule
  prompt and the teacher template the rule plus that prompt (the dataset's with-rule prompt up
  to where the rule sits and the separators).

  If a without-context field is not a substring of its with-context partner (a rephrased
  record), `on_mismatch="error"` raises naming the record; `"full"` uses the whole
  with-context prompt as the context (the teacher then sees the instruction twice).
  The full with-context prompt is always kept in `meta["teacher_prompt"]`.
  """
  if on_mismatch not in ("error", "full"):
    raise ValueError(f"on_mismatch must be 'error' or 'full', got {on_mismatch!r}")
  with_records = read_alpaca_records(with_context_path)
  without_records = read_alpaca_records(without_context_path)
  if len(with_records) != len(without_records):
    raise ValueError(f"paired alpaca files differ in length: {os.fspath(with_context_path)} has "
                     f"{len(with_records)} records, {os.fspath(without_context_path)} has "
                     f"{len(without_records)}")
  examples = []
  for i, (w, wo) in enumerate(zip(with_records, without_records)):
    where = f"record {i} of {os.fspath(with_context_path)} / {os.fspath(without_context_path)}"
    if w["output"] != wo["output"]:
      raise ValueError(f"{where}: outputs differ; the pair must share its response")
    teacher_prompt = alpaca_prompt(w["instruction"], w.get("input", ""))
    student_prompt = alpaca_prompt(wo["instruction"], wo.get("input", ""))
    context = _paired_context(w, wo)
    if context is None:
      if on_mismatch == "error":
        raise ValueError(f"{where}: the without-context prompt is not part of the "
                         f"with-context prompt; pass on_mismatch='full' to use the whole "
                         f"with-context prompt as context")
      context = teacher_prompt
    meta = {**_alpaca_meta(wo, without_context_path, i), "teacher_prompt": teacher_prompt}
    examples.append(Example(context=context, query=student_prompt, response=wo["output"],
                            meta=meta))
  return examples

