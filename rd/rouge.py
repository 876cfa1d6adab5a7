"""ROUGE-L (Lin, 2004), the metric Super-NaturalInstructions and TAGI report for generated text.

Tokens as `rouge_score`'s default tokenizer makes them (lower case, runs of ASCII letters and
digits, no stemming); the score is the F1 of the longest common subsequence's precision (over
the prediction) and recall (over the reference). Either side empty scores 0, as there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
  return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common subsequence (one row of the DP table at a time)."""
  previous = [0] * (len(b) + 1)
  for x in a:
    current = [0]
    for j, y in enumerate(b):
      current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
  """ROUGE-L F1 of one prediction against one reference, in [0, 1]."""
  pred, ref = tokenize(prediction), tokenize(reference)
  if not pred or not ref:
    return 0.0
  lcs = lcs_length(pred, ref)
  if lcs == 0:
    return 0.0
  precision, recall = lcs / len(pred), lcs / len(ref)
  return 2 * precision * recall / (precision + recall)
