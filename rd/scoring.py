"""Answer scoring shared by every job: SQuAD-style normalized exact match, whole-word
containment, the answer line of a sampled completion, and ROUGE-L (Google's `rouge-score`,
the package Super-NaturalInstructions and TAGI report it with)."""

from __future__ import annotations

import re
import string
import functools
import unicodedata
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}


def normalize_answer(s: str) -> str:
  """SQuAD-style: NFKC, lower case, no punctuation, no articles (a/an/the), single spaces."""
  s = unicodedata.normalize("NFKC", s).lower()
  s = "".join(" " if ch in _PUNCT else ch for ch in s)
  s = _ARTICLES.sub(" ", s)
  return " ".join(s.split())


def _golds(gold: str | Iterable[str]) -> list[str]:
  return [gold] if isinstance(gold, str) else list(gold)


def exact_match(prediction: str, gold: str | Iterable[str]) -> bool:
  """Normalized prediction equals a normalized gold answer (any of several, if a list)."""
  p = normalize_answer(prediction)
  return any(p == normalize_answer(g) for g in _golds(gold))


def contains_answer(prediction: str, gold: str | Iterable[str]) -> bool:
  """A normalized gold answer occurs in the normalized prediction as whole words ("1987" is in
  "born in 1987", not in "19870"; "teal" is not in "steal"). An empty gold matches nothing."""
  p = normalize_answer(prediction).split()
  for g in _golds(gold):
    g = normalize_answer(g).split()
    if g and any(p[i:i + len(g)] == g for i in range(len(p) - len(g) + 1)):
      return True
  return False


def answer_span(completion: str) -> str:
  """The answer part of a sampled completion: its first non-empty line, stripped."""
  for line in completion.split("\n"):
    if line.strip():
      return line.strip()
  return ""


@functools.cache
def _rouge_l_scorer():
  from rouge_score import rouge_scorer  # pylint: disable=import-outside-toplevel
  return rouge_scorer.RougeScorer(["rougeL"])  # lower case, ASCII letters/digits, no stemming


def rouge_l(prediction: str, reference: str) -> float:
  """ROUGE-L F1 of one prediction against one reference, in [0, 1] (0 if either is empty)."""
  return float(_rouge_l_scorer().score(reference, prediction)["rougeL"].fmeasure)
