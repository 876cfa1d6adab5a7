"""BM25 retrieval and the RAG prompt."""

import pytest

from rd.tasks import facts
from rd.retrieval import Retriever, rag_prompt

CORPUS = [
    "Talven Orsley was born in 1961. He works as a locksmith in the town of Quenholt.",
    "The town of Brelmark lies on the Sevine River. It is famous for its saffron.",
    "The Kelthix Foundry was founded in 1877 and makes lanterns. It employs 312 people.",
    "Mirara Vangoth plays the cello. Her favourite colour is teal.",
]


def test_bm25_ranks_the_right_document_first():
  r = Retriever(CORPUS)
  assert r.top("When was Talven Orsley born?", 1) == [0]
  assert r.top("Which river flows through Brelmark?", 2)[0] == 1
  assert r.top("How many people work at the Kelthix Foundry?", 1) == [2]
  assert r.top("What instrument does Mirara Vangoth play?", 4)[0] == 3
  assert sorted(r.top("anything", 4)) == [0, 1, 2, 3]  # k = all: every document once
  assert r.top_documents("Mirara Vangoth", 1) == [CORPUS[3]]


def test_query_without_content_words_does_not_fail():
  r = Retriever(CORPUS)
  assert r.scores("the of and?").tolist() == [0.0] * 4
  assert len(r.top("?", 2)) == 2
  with pytest.raises(ValueError):
    r.top("x", 0)
  with pytest.raises(ValueError):
    Retriever([])


def test_heldout_questions_of_the_facts_dataset_retrieve_their_document():
  splits = facts.make_splits(facts.FactsConfig(num_documents=12, seed=1))
  r = Retriever([d.context for d in splits["documents"]])
  ids = [d.meta["doc_id"] for d in splits["documents"]]
  hits = [ids[r.top(e.query, 1)[0]] == e.meta["doc_id"] for e in splits["test"]]
  assert sum(hits) / len(hits) >= 0.95


def test_rag_prompt_is_the_teacher_prompt_with_the_retrieved_documents():
  r = Retriever(CORPUS)
  q = "When was Talven Orsley born?"
  assert rag_prompt(r, q, 1) == facts.TEACHER_TEMPLATE.format(context=CORPUS[0], query=q)
  two = rag_prompt(r, q, 2)
  assert two.startswith(CORPUS[0] + "\n\n") and two.endswith(f"Question: {q}\nAnswer:")
