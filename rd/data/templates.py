"""`Template`: how an `Example` becomes the teacher's and the student's prompt text.

Two `str.format` strings with the placeholders `{context}` and `{query}`; the teacher's normally
uses both, the student's only `{query}` (an SFT-with-context baseline may use `{context}` too).
The response is never part of a template: `tokenize.py` tokenizes it on its own and appends its
ids, so that the teacher and the student are scored on identical response token ids. A template
should therefore end where the response begins (e.g. "Answer:"), and the response text should
carry its own leading space if the tokenizer needs one.

Braces inside the *values* (a context with JSON in it) are safe; literal braces in a template
itself are written `{{` and `}}`, as usual for `str.format`.

Chat mode (`chat=True`): the rendered text becomes the single user turn of
`tokenizer.apply_chat_template(..., add_generation_prompt=True)`, so the prompt ends with the
model's turn header and the response follows it. This uses the chat template stored with the
tokenizer (no network). Chat templates usually render the BOS token as text; `tokenize.py`
recognises a leading BOS id and does not add a second one.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

from rd.data.examples import Example

FIELDS = ("context", "query")


def _placeholders(fmt: str) -> set[str]:
  return {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}


@dataclasses.dataclass(frozen=True)
class Template:
  teacher: str = "{context}\n\n{query}"
  student: str = "{query}"
  chat: bool = False
  system: str | None = None  # chat mode only: an optional system turn

  def __post_init__(self):
    for side in ("teacher", "student"):
      names = _placeholders(getattr(self, side))
      unknown = sorted(names - set(FIELDS))
      if unknown:
        raise ValueError(f"Template.{side}: unknown placeholder(s) {unknown}; "
                         f"use only {{context}} and {{query}}")
      if "query" not in names:
        raise ValueError(f"Template.{side} must contain {{query}}: {getattr(self, side)!r}")

  def teacher_prompts(self, example: Example, tokenizer: Any = None) -> tuple[str, ...]:
    """One teacher prompt per teacher context (K for an ensemble example, else 1)."""
    return tuple(self._finish(self.teacher.format(context=c, query=example.query), tokenizer)
                 for c in example.teacher_contexts)

  def student_prompt(self, example: Example, tokenizer: Any = None) -> str:
    return self._finish(self.student.format(context=example.context, query=example.query),
                        tokenizer)

  def _finish(self, text: str, tokenizer: Any) -> str:
    return chat_prompt(tokenizer, text, self.system) if self.chat else text


def chat_prompt(tokenizer: Any, user_text: str, system: str | None = None) -> str:
  """`user_text` as one user turn, ending with the assistant turn header."""
  if tokenizer is None or not getattr(tokenizer, "chat_template", None):
    raise ValueError("Template(chat=True) needs a tokenizer with a chat_template")
  messages = [{"role": "user", "content": user_text}]
  if system is not None:
    messages.insert(0, {"role": "system", "content": system})
  return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# Two common templates: a question-answer layout, and context-then-query with no decoration.
QA = Template(teacher="{context}\n\nQuestion: {query}\nAnswer:",
              student="Question: {query}\nAnswer:")
PLAIN = Template()


def prompt_fn(template: str):
  """`Example -> prompt text` for one template string (what evaluation and sampling feed)."""
  return lambda e: template.format(context=e.context, query=e.query)
