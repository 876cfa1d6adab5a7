"""Retrieval-augmented generation (RAG) baseline: BM25 over the documents, answered by the base.

    retriever = Retriever([d.context for d in documents])
    retriever.top("When was Uleth Neskessa born?", k=1)  # -> [index of the best document]
    rag_prompt(retriever, query, k=1)                    # top-k documents + the question

BM25 is `bm25s` (lexical, sparse matrices, no model): documents and queries are lower-cased,
split into words of 2+ characters and stripped of English stop words. The RAG prompt is the
teacher's layout with the retrieved documents (best first, separated by blank lines) as the
context, so with k = 1 and the right document retrieved, RAG sees exactly what the teacher sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rd.tasks import facts


def _tokenize(texts: Sequence[str]) -> list[list[str]]:
  import bm25s  # pylint: disable=import-outside-toplevel  (it starts JAX's backend on import)
  return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


class Retriever:
  """BM25 index over `documents` (strings); `top(query, k)` gives document indices."""

  def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75):
    if not documents:
      raise ValueError("Retriever needs at least one document")
    self.documents = list(documents)
    import bm25s  # pylint: disable=import-outside-toplevel
    self._bm25 = bm25s.BM25(k1=k1, b=b)
    self._bm25.index(_tokenize(self.documents), show_progress=False)

  def scores(self, query: str) -> np.ndarray:
    """BM25 score of every document for `query` [num_documents]."""
    words = _tokenize([query])[0]
    if not words:  # only stop words or punctuation: every document scores 0
      return np.zeros(len(self.documents))
    return np.asarray(self._bm25.get_scores(words), np.float64)

  def top(self, query: str, k: int = 1) -> list[int]:
    """Indices of the `k` best documents for `query`, best first (ties: lower index first)."""
    if k < 1:
      raise ValueError(f"k must be >= 1, got {k}")
    scores = self.scores(query)
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]

  def top_documents(self, query: str, k: int = 1) -> list[str]:
    return [self.documents[i] for i in self.top(query, k)]


def rag_prompt(retriever: Retriever, query: str, k: int = 1,
               template: str = facts.TEACHER_TEMPLATE) -> str:
  """`template` with {context} = the top-k documents joined by blank lines, {query} = query."""
  return template.format(context="\n\n".join(retriever.top_documents(query, k)), query=query)
