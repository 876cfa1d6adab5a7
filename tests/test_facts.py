"""The invented-entity knowledge-injection dataset (`rd.tasks.facts`) and its answer scoring."""

import re

import pytest

from rd import scoring
from rd.tasks import facts
from rd.data.examples import Example

# Common English words and given names that an invented name must never be.
COMMON = set("""
the be to of and a in that have it for not on with he as you do at this but his by from they we
say her she or an will my one all would there their what so up out if about who get which go me
when make can like time no just him know take people into year your good some could them see
other than then now look only come its over think also back after use two how our work first
well way even new want because any these give day most us town river city name house home water
land field forest stone hill lake sea tree wood iron gold silver copper salt honey wine bread
mill market bridge castle tower church school king queen lord lady duke prince knight john mary
james robert michael william david richard joseph thomas charles anna emma olivia sophia mia
isabella ava emily elizabeth sarah laura maria peter paul mark luke george henry edward arthur
alice grace rose lily daisy ruby jack harry oliver leo max sam tom ben alex kelly carol karen
london paris berlin rome vienna madrid boston chicago dublin oslo york kent devon essex
talent velvet carrot marvel gothic kipper tavern pellet varnish zephyr zorro wendy kelvin
""".split())


def _words(template):
  text = re.sub(r"\{[^}]*\}", " ", template).lower()
  return set(re.sub(r"[^a-z ]", " ", text.replace("'s", " ")).split())


@pytest.fixture(scope="module")
def small():
  return facts.make_splits(facts.SMALL)


@pytest.fixture(scope="module")
def large_docs():
  return facts.make_documents(facts.LARGE)


def test_sizes(small, large_docs):
  docs = small["documents"]
  assert len(docs) == 24 and len(large_docs) == 200
  assert [d.meta["kind"] for d in docs[:6]] == list(facts.KINDS) * 2
  n_facts = sum(len(d.meta["facts"]) for d in docs)
  assert len(small["train"]) == 3 * n_facts
  assert len(small["test"]) == 2 * n_facts


def test_deterministic_per_seed():
  a = facts.make_splits(facts.FactsConfig(num_documents=12, seed=3))
  b = facts.make_splits(facts.FactsConfig(num_documents=12, seed=3))
  c = facts.make_splits(facts.FactsConfig(num_documents=12, seed=4))
  assert a == b
  texts_a = [e.context for e in a["documents"]]
  texts_c = [e.context for e in c["documents"]]
  assert not set(texts_a) & set(texts_c)
  # A prefix of a larger dataset is not required, but the seed alone fixes everything.
  assert facts.make_documents(facts.FactsConfig(num_documents=12, seed=3)) == \
      facts.make_documents(facts.FactsConfig(num_documents=12, seed=3))


def test_every_document_has_at_least_four_facts(small, large_docs):
  for doc in large_docs:
    assert len(doc.facts) >= 4
    assert len({f.type for f in doc.facts}) == len(doc.facts)
    assert doc.entity in doc.text
    for fact in doc.facts:
      assert fact.sentence in doc.text
  for e in small["documents"]:
    assert len(e.meta["facts"]) >= 4
    assert e.query == "" and e.response == ""


def test_answers_appear_verbatim_in_their_document(small, large_docs):
  for split in ("train", "test"):
    for e in small[split]:
      answer = e.meta["answer"]
      assert re.search(rf"\b{re.escape(answer)}\b", e.context), (answer, e.context)
      assert e.response == f" {answer}\n"
      assert not scoring.contains_answer(e.query, answer), e.query  # no leak into the question
  for doc in large_docs:
    for fact in doc.facts:
      assert re.search(rf"\b{re.escape(fact.answer)}\b", doc.text)


def test_answers_are_short(large_docs):
  for doc in large_docs:
    for fact in doc.facts:
      assert 1 <= len(fact.answer.split()) <= 2, fact


def test_heldout_questions_differ_from_training_questions(small, large_docs):
  train_qs = {e.query for e in small["train"]}
  train_norm = {scoring.normalize_answer(q) for q in train_qs}
  for e in small["test"]:
    assert e.query not in train_qs
    assert scoring.normalize_answer(e.query) not in train_norm
  # Same documents and facts in both splits.
  key = lambda e: (e.meta["doc_id"], e.meta["fact"])  # noqa: E731
  assert {key(e) for e in small["train"]} == {key(e) for e in small["test"]}
  assert {e.context for e in small["train"]} == {e.context for e in small["test"]}
  for doc in large_docs:
    for fact in doc.facts:
      train = {q for _, q in facts.questions(doc, fact, "train")}
      for _, q in facts.questions(doc, fact, "heldout"):
        assert q not in train


def test_heldout_templates_use_other_frames():
  """Not a synonym swapped into the training frame: little word overlap with every training
  template of the same fact."""
  for fact_types in facts.FACT_TYPES.values():
    for ft in fact_types:
      assert len(ft.train) == 3 and len(ft.heldout) == 2
      assert not set(ft.train) & set(ft.heldout)
      for h in ft.heldout:
        for t in ft.train:
          a, b = _words(h), _words(t)
          assert len(a & b) / len(a | b) < 0.5, (h, t)


def test_templates_fill_every_slot(large_docs):
  for doc in large_docs:
    assert "{" not in doc.text and "}" not in doc.text
    for fact in doc.facts:
      for question_set in ("train", "heldout"):
        for _, q in facts.questions(doc, fact, question_set):
          assert "{" not in q and doc.entity in q and q[0].isupper()
          assert q.endswith("?") or q.endswith(".")


def test_names_are_invented():
  pools = facts.name_pools()
  for pool, names in pools.items():
    assert len(names) >= 150, pool
    assert len(set(names)) == len(names)
    for name in names:
      assert name.isalpha() and name[0].isupper() and name[1:].islower(), name
      assert name.lower() not in COMMON, name
      assert name not in facts._NOT_NAMES
      assert not re.search(r"[aeiouy]{3}|[^aeiouy]{4}", name.lower()), name
  # No plain-word fact value (a colour, a trade...) doubles as a name.
  plain = {w.lower() for group in (facts.PROFESSIONS, facts.COLOURS, facts.INSTRUMENTS,
                                   facts.TOWN_PRODUCTS, facts.ORG_PRODUCTS, facts.LOGO_ANIMALS)
           for w in group}
  assert not plain & {n.lower() for names in pools.values() for n in names}


def test_each_name_plays_one_role(large_docs):
  """Within one dataset every invented word names one thing: no town shares a name with a
  person, a pet, or another town."""
  invented = set()
  for name in facts.name_pools().values():
    invented |= set(name)
  seen = {}
  for doc in large_docs:
    entities = [(doc.entity, doc.kind)]
    entities += [(f.answer, f.type) for f in doc.facts
                 if any(w in invented for w in f.answer.split())]
    for value, role in entities:
      for word in value.split():
        if word in invented:
          assert seen.setdefault(word, (value, role)) == (value, role) or \
              seen[word][0] == value, (word, seen[word], value, role)
  entities = [d.entity for d in large_docs]
  assert len(set(entities)) == len(entities)
  for doc in large_docs:  # names in one document do not start alike
    words = [w for f in doc.facts for w in f.answer.split() if w in invented]
    words += [w for w in doc.entity.split() if w in invented]
    assert len({w[:3] for w in words}) == len(words), (doc.entity, words)


def test_config_validation():
  with pytest.raises(ValueError, match="num_documents"):
    facts.FactsConfig(num_documents=0)
  with pytest.raises(ValueError, match="min_facts"):
    facts.FactsConfig(min_facts=3, max_facts=2)
  with pytest.raises(ValueError, match="min_facts"):
    facts.FactsConfig(max_facts=9)
  with pytest.raises(ValueError, match="ran out"):
    facts.make_documents(facts.FactsConfig(num_documents=5000))
  few = facts.make_splits(facts.FactsConfig(num_documents=3, seed=1, min_facts=4, max_facts=4,
                                            train_questions_per_fact=1,
                                            heldout_questions_per_fact=1))
  assert len(few["train"]) == len(few["test"]) == 12


def test_prompt_templates(small):
  e = small["train"][0]
  assert facts.QA_TEMPLATE.teacher == facts.TEACHER_TEMPLATE
  assert facts.QA_TEMPLATE.student_prompt(e) == f"{facts.FORMAT_SHOT}Question: {e.query}\nAnswer:"
  (teacher,) = facts.QA_TEMPLATE.teacher_prompts(e)
  assert teacher == f"{e.context}\n\n{facts.FORMAT_SHOT}Question: {e.query}\nAnswer:"
  assert (teacher + e.response).endswith(f"Answer: {e.meta['answer']}\n")


def test_normalize_answer():
  assert scoring.normalize_answer("  The Tethira  River. ") == "tethira river"
  assert scoring.normalize_answer("An owl!") == "owl"
  assert scoring.normalize_answer("a") == ""
  assert scoring.normalize_answer("Theatre") == "theatre"  # articles only as whole words
  assert scoring.normalize_answer("ＴＥＡＬ") == "teal"  # NFKC
  assert scoring.normalize_answer("Talven's “dog”") == "talven s dog"
  assert scoring.normalize_answer("") == ""
  assert scoring.normalize_answer("1,987") == "1 987"


def test_exact_match():
  assert scoring.exact_match(" 1987\n", "1987")
  assert scoring.exact_match("the Keltharn Foundry.", "Keltharn Foundry")
  assert scoring.exact_match("TEAL", "teal")
  assert not scoring.exact_match("1987 or 1988", "1987")
  assert not scoring.exact_match("", "1987")
  assert scoring.exact_match("", "")  # SQuAD convention: empty matches empty
  assert scoring.exact_match("blue", ["red", "Blue"])
  assert not scoring.exact_match("blue", [])


def test_contains_answer():
  assert scoring.contains_answer("He was born in 1987.", "1987")
  assert not scoring.contains_answer("19870", "1987")
  assert not scoring.contains_answer("steal", "teal")
  assert scoring.contains_answer("On the Tethira River, of course", "Tethira River")
  assert not scoring.contains_answer("Tethira", "Tethira River")
  assert not scoring.contains_answer("anything", "")
  assert not scoring.contains_answer("anything", "the")  # normalizes to empty
  assert not scoring.contains_answer("", "1987")
  assert scoring.contains_answer("It is Mibsel", ["Zubo", "mibsel"])


def test_answer_span():
  assert scoring.answer_span(" 1987\nQuestion: next") == "1987"
  assert scoring.answer_span("\n\n Harnrel \n") == "Harnrel"
  assert scoring.answer_span("") == ""
  assert scoring.answer_span("\n \n") == ""


def test_examples_are_examples(small):
  for split in facts.SPLITS:
    assert all(isinstance(e, Example) for e in small[split])
  e = small["test"][0]
  assert e.meta["question_set"] == "heldout"
  assert set(e.meta) == {"doc_id", "kind", "entity", "fact", "answer", "template",
                         "question_set"}
