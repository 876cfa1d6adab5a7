"""The bundled knowledge-injection dataset: short documents about invented entities.

Every document describes one invented person, town or organisation, whose name (and the names
of the towns, organisations, people and pets it mentions) is made of syllables that spell no
common word, so a pretrained model cannot know any of it. A document states 4 or more facts,
each with a short answer (a year, a number, one invented name, or one plain word) that appears
verbatim in the document, in a short paragraph whose sentences are drawn from several
templates per fact and shuffled.

Each fact has two disjoint sets of question templates:

* training questions (`FactType.train`, 3 per fact type), and
* held-out questions (`FactType.heldout`, 2 per fact type), which are worded in another
  frame, not the training frame with a synonym swapped in (e.g. train "In which year was X
  born?" vs held out "X came into the world in what year?"). They test whether distilled
  knowledge generalises beyond the questions it was trained on.

As `Example`s (`make_splits`):

* `train`: context = the document, query = a training question, response = " <answer>\\n"
  (leading space, newline-terminated: the answer is the natural continuation of "Answer:");
* `test`: the same documents with the held-out questions;
* `documents`: one per document, context = the document, query = response = "", meta holds
  the entity and its facts (for RAG indexes and for a train-on-the-documents baseline).

`meta` of a QA example: doc_id, entity, kind (person/place/organisation), fact, answer,
template (its index in the fact's template list), question_set ("train"/"heldout").

Prompts for a small *base* model (Gemma 3 270M): `TEACHER_TEMPLATE` puts the document before
one worked question (`FORMAT_SHOT`) and "Question: ...\\nAnswer:", `STUDENT_TEMPLATE` is the
same without the document (`QA_TEMPLATE` is the pair as an `rd.data.templates.Template`).

Scoring: `normalize_answer` (SQuAD-style), `exact_match`, `contains_answer`, and
`answer_span` to cut a sampled completion at its first line.

Everything is deterministic given (num_documents, seed, ...): names, facts, sentence choice and
order come from one `random.Random(seed)` and never from set or dict-hash order.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rd.data.examples import Example
from rd.data.templates import Template

# ----------------------------------------------------------------------------------------------
# Prompt templates and response format.

# One neutral worked question shows the answer format (a few words, no sentence) to both sides;
# after the document, so its content cannot stand in for the document's. Gemma 3 270M with the
# document, on rd_facts/small's 128 held-out questions: exact match 74.2% without it, 85.9% with
# it (78.9% with it before the document; 68.0% with "capital of France? Paris", whose entities
# leaked into the answers). Issue 4's notes.
FORMAT_SHOT = "Question: How many days are in a week?\nAnswer: seven\n\n"
TEACHER_TEMPLATE = "{context}\n\n" + FORMAT_SHOT + "Question: {query}\nAnswer:"
STUDENT_TEMPLATE = FORMAT_SHOT + "Question: {query}\nAnswer:"
QA_TEMPLATE = Template(teacher=TEACHER_TEMPLATE, student=STUDENT_TEMPLATE)
RESPONSE_FORMAT = " {answer}\n"  # the Example.response of a QA pair

KINDS = ("person", "place", "organisation")

# ----------------------------------------------------------------------------------------------
# Invented names: syllable pairs. `_NOT_NAMES` lists the pairs that spell a word or a name the
# Gemma 3 tokenizer has as a single word token (checked when these lists were written); they
# are never used. Every name is also checked to be unique within one generated dataset.

_FIRST = (("Tal", "Bre", "Vel", "Kae", "Mir", "Dov", "Quor", "Jas", "Fen", "Ila", "Rhu", "Zan",
           "Ebr", "Wyl", "Nai", "Lys", "Thal", "Ysa", "Brom", "Hav", "Pell", "Ruv", "Sab",
           "Tov", "Ul", "Orm", "Dez", "Kiv"),
          ("ven", "wick", "dra", "mon", "ith", "ara", "esk", "uun", "vor", "elle", "ric",
           "anth", "oby", "ista", "orn", "ael", "imo", "eth", "ura", "ant"))
_SURNAME = (("Ors", "Vang", "Thel", "Krim", "Das", "Brae", "Quil", "Mord", "Zeph", "Gald",
             "Jerv", "Nesk", "Pold", "Rask", "Strav", "Tuv", "Ving", "Wex", "Yarr", "Cald",
             "Drum", "Hesk", "Lorv", "Bax"),
            ("ov", "ley", "avin", "oth", "ure", "ix", "enby", "ask", "wyn", "omir", "ett", "isk",
             "aro", "ulf", "ode", "ivar", "ane", "essa"))
_TOWN = (("Vost", "Quen", "Harn", "Brel", "Isk", "Thar", "Mov", "Calv", "Dren", "Elv", "Gul",
          "Hesp", "Jor", "Kel", "Lom", "Pran", "Rov", "Sund", "Tresk", "Ulm", "Varn", "Zav",
          "Ashk", "Bly", "Cresh", "Ferm", "Oss", "Wend"),
         ("rel", "moor", "havn", "ith", "aby", "esca", "ovar", "mark", "wick", "stad", "ora",
          "enne", "holt", "ivia", "usk", "eth", "borg", "ley", "ant", "imb"))
_GEO = (("Ambr", "Sev", "Tav", "Yl", "Wenn", "Drav", "Ilv", "Marn", "Kess", "Orv", "Pesk",
         "Quav", "Rhen", "Sull", "Teth", "Uvr", "Vask", "Zor", "Glim", "Hald"),
        ("el", "ine", "ova", "ane", "urr", "ette", "arra", "oss", "ien", "umb", "ax", "eddon",
         "ira", "olt"))
_PET = (("Mib", "Pok", "Zu", "Tam", "Fli", "Nob", "Gri", "Bup", "Wib", "Dop", "Kip", "Lum",
         "Snor", "Tib", "Yop", "Quib"),
        ("bo", "sel", "zy", "ket", "ple", "dri", "wig", "nus", "to", "mer", "ble", "ix"))
_ORG = (("Kelth", "Ossiv", "Marv", "Drel", "Tolv", "Brask", "Quend", "Sarv", "Vell", "Hurn",
         "Jask", "Prev", "Carr", "Ennv", "Goth", "Nyv", "Rull", "Wark"),
        ("arn", "ar", "ane", "ix", "ory", "enn", "ast", "oll", "ume", "ith", "adi", "erro"))

# Pairs from the lists above that spell a real name or word: the Gemma 3 tokenizer has the first
# two as single word tokens (of ~93k space-prefixed alphabetic tokens, which cover the common
# words and names of many languages; no other pair is one), the rest are known surnames, given
# names, places or words spotted by reading the pools.
_NOT_NAMES = frozenset({"Carroll", "Kelley", "Fenwick", "Zandra", "Ulric", "Talmon", "Kessel",
                        "Tavel", "Haldane", "Wexley", "Mirelle", "Sevel", "Zorine"})
_VOWELS = frozenset("aeiouy")


def _pronounceable(a: str, b: str) -> bool:
  """No doubled letter at the join ("Ossstad"), at most 2 vowels or 3 consonants in a row."""
  if a[-1] == b[0]:
    return False
  runs = re.findall(r"[aeiouy]+|[^aeiouy]+", (a + b).lower())
  return all(len(r) <= (2 if r[0] in _VOWELS else 3) for r in runs)

# Plain-word fact values: answers a model could guess only at chance.
PROFESSIONS = ("beekeeper", "cartographer", "locksmith", "glassblower", "botanist", "surveyor",
               "bookbinder", "cheesemaker", "clockmaker", "potter", "blacksmith", "stonemason",
               "weaver", "tailor", "baker", "carpenter", "fisherman", "librarian", "pharmacist",
               "jeweller", "shoemaker", "gardener", "brewer", "sculptor", "translator")
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "grey", "teal", "crimson",
           "violet", "amber", "turquoise", "silver", "maroon", "indigo")
INSTRUMENTS = ("violin", "cello", "flute", "harp", "trumpet", "clarinet", "accordion", "banjo",
               "oboe", "trombone", "mandolin", "bagpipes", "harmonica", "piano", "drums")
PET_SPECIES = ("dog", "cat", "parrot", "tortoise", "ferret", "goat", "rabbit", "hedgehog",
               "donkey", "goose", "hamster", "pony")
SIBLINGS = ("brother", "sister")
TOWN_PRODUCTS = ("saffron", "copper", "wool", "glassware", "cider", "salt", "lace", "honey",
                 "pottery", "cheese", "timber", "silk", "olives", "marble", "tulips")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
ORG_KINDS = ("Foundry", "Guild", "Institute", "Works", "Cooperative", "Press", "Shipyards",
             "Company", "Society", "Mills", "Laboratories", "Brewery")
ORG_PRODUCTS = ("lanterns", "telescopes", "clocks", "bicycles", "umbrellas", "maps", "candles",
                "kites", "barometers", "compasses", "teapots", "sails", "ropes", "bells",
                "typewriters")
LOGO_ANIMALS = ("heron", "fox", "owl", "stag", "otter", "falcon", "badger", "salmon", "hare",
                "raven", "lynx", "beetle", "swan", "wolf", "tortoise")

# ----------------------------------------------------------------------------------------------
# Fact types. Document sentences use {S} (the subject at the start of a sentence: the name or
# She/He/It/The town...), {s} (the subject mid-sentence), {S_poss}/{s_poss} (possessive), and
# the fact's own slots ({answer} and extras). Questions always name the entity: {name}.


@dataclasses.dataclass(frozen=True)
class FactType:
  name: str
  sentences: tuple[str, ...]  # document sentence templates
  train: tuple[str, ...]  # training question templates
  heldout: tuple[str, ...]  # held-out question templates (other frames than `train`)


def _ft(name, sentences, train, heldout) -> FactType:
  return FactType(name, tuple(sentences), tuple(train), tuple(heldout))


PERSON_FACTS = (
    _ft("birth_year",
        ["{S} was born in {answer}.", "Born in {answer}, {s} grew up by the sea.",
         "{S} was born in the year {answer}."],
        ["In which year was {name} born?", "What year was {name} born in?",
         "When was {name} born?"],
        ["{name} came into the world in what year?", "What is the birth year of {name}?"]),
    _ft("home_town",
        ["{S} lives in the town of {answer}.", "These days {s} lives in {answer}.",
         "{S} has lived in {answer} for many years."],
        ["Where does {name} live?", "In which town does {name} live?",
         "What is the name of the town where {name} lives?"],
        ["{name} makes a home in which town?", "Which town is home to {name}?"]),
    _ft("profession",
        ["{S} works as a {answer}.", "By trade, {s} is a {answer}.",
         "{S} earns a living as a {answer}."],
        ["What is {name}'s profession?", "What does {name} do for a living?",
         "What job does {name} have?"],
        ["{name} is employed in which trade?", "Which occupation does {name} follow?"]),
    _ft("employer",
        ["{S} is employed by the {answer}.", "{S} works for the {answer}.",
         "{S} has a job at the {answer}."],
        ["For which organisation does {name} work?", "Which organisation employs {name}?",
         "What is the name of {name}'s employer?"],
        ["{name} is on the staff of which organisation?",
         "Which organisation pays the wages of {name}?"]),
    _ft("pet",
        ["{S} owns a {species} named {answer}.", "{S_poss} {species} is called {answer}.",
         "{S} keeps a {species} called {answer}."],
        ["What is the name of {name}'s {species}?", "What is {name}'s {species} called?",
         "What did {name} name the {species}?"],
        ["{name} owns a {species}. By what name is it known?",
         "Which name does the {species} belonging to {name} answer to?"]),
    _ft("favourite_colour",
        ["{S_poss} favourite colour is {answer}.", "{S} likes the colour {answer} best.",
         "Of all colours, {s} loves {answer} the most."],
        ["What is {name}'s favourite colour?", "Which colour does {name} like best?",
         "What colour does {name} like most?"],
        ["If {name} had to choose one colour, which would it be?",
         "Name the colour that {name} prefers to all others."]),
    _ft("instrument",
        ["{S} plays the {answer}.", "In the evenings, {s} plays the {answer}.",
         "{S} has played the {answer} since childhood."],
        ["What instrument does {name} play?", "Which musical instrument does {name} play?",
         "What is the instrument that {name} plays?"],
        ["{name} makes music on which instrument?",
         "If you heard {name} performing, which instrument would you hear?"]),
    _ft("sibling",
        ["{S} has a {relation} named {answer}.", "{S_poss} {relation} is called {answer}.",
         "{S} grew up with a {relation}, {answer}."],
        ["What is the name of {name}'s {relation}?", "What is {name}'s {relation} called?",
         "Who is {name}'s {relation}?"],
        ["{name} has a {relation}. What name does that {relation} go by?",
         "Tell me the first name of the {relation} of {name}."]),
)

PLACE_FACTS = (
    _ft("founded_year",
        ["{S} was founded in {answer}.", "Settlers founded {s} in {answer}.",
         "{S} dates back to {answer}, when it was founded."],
        ["In which year was {name} founded?", "When was {name} founded?",
         "What year was {name} founded in?"],
        ["{name} has existed since what year?", "What is the founding year of {name}?"]),
    _ft("river",
        ["{S} lies on the {answer} River.", "The {answer} River flows through {s}.",
         "{S} was built on the banks of the {answer} River."],
        ["On which river does {name} lie?", "Which river flows through {name}?",
         "What river is {name} on?"],
        ["{name} sits beside what body of flowing water?",
         "Name the river that passes {name}."]),
    _ft("province",
        ["{S} is in the province of {answer}.", "{S} belongs to the province of {answer}.",
         "The province of {answer} includes {s}."],
        ["In which province is {name}?", "Which province is {name} located in?",
         "What province does {name} belong to?"],
        ["{name} is part of what province?", "Name the province that contains {name}."]),
    _ft("known_for",
        ["{S} is famous for its {answer}.", "{S} is known far and wide for its {answer}.",
         "Traders travel to {s} for its {answer}."],
        ["What is {name} famous for?", "What is {name} known for?",
         "What is {name} best known for?"],
        ["Which local product gave {name} its reputation?",
         "People visit {name} to buy what?"]),
    _ft("mayor",
        ["The mayor of {s} is {answer}.", "{S} is governed by its mayor, {answer}.",
         "{answer} serves as mayor of {s}."],
        ["Who is the mayor of {name}?", "Who is {name}'s mayor?",
         "What is the name of the mayor of {name}?"],
        ["{name} is led by which mayor?",
         "Which person holds the office of mayor in {name}?"]),
    _ft("festival_month",
        ["Every {answer}, {s} holds a lantern festival.",
         "{S} celebrates its festival each {answer}.",
         "The festival of {s} takes place in {answer}."],
        ["In which month does {name} hold its festival?",
         "In what month does the festival of {name} take place?",
         "What month is the festival of {name} held in?"],
        ["{name} celebrates during which month of the year?",
         "Which month should you visit {name} to see its festival?"]),
    _ft("twin_town",
        ["{S} is twinned with {answer}.", "{S_poss} twin town is {answer}.",
         "Since long ago, {s} has been twinned with {answer}."],
        ["Which town is {name} twinned with?", "What is the twin town of {name}?",
         "With which town is {name} twinned?"],
        ["{name} has a partnership with which other town?",
         "Name the sister town of {name}."]),
)

ORG_FACTS = (
    _ft("founded_year",
        ["{S} was founded in {answer}.", "{S} opened its doors in {answer}.",
         "{S} was established in {answer}."],
        ["In which year was {name} founded?", "When was {name} founded?",
         "What year was {name} established?"],
        ["{name} has been operating since which year?",
         "What is the founding year of {name}?"]),
    _ft("founder",
        ["{S} was founded by {answer}.", "{answer} started {s}.",
         "{S_poss} founder was {answer}."],
        ["Who founded {name}?", "Who was the founder of {name}?", "Who started {name}?"],
        ["{name} owes its existence to which person?",
         "Which person set up {name} in the beginning?"]),
    _ft("headquarters",
        ["{S} is based in {answer}.", "{S_poss} headquarters are in {answer}.",
         "{S} has its head office in {answer}."],
        ["Where is {name} based?", "Where are the headquarters of {name}?",
         "In which town is {name} headquartered?"],
        ["{name} runs its business from which town?",
         "Which town hosts the main office of {name}?"]),
    _ft("product",
        ["{S} makes {answer}.", "{S} is best known for its {answer}.",
         "{S} produces {answer}."],
        ["What does {name} make?", "What does {name} produce?",
         "What product is {name} known for?"],
        ["{name} manufactures which goods?",
         "If you bought something from {name}, what would it be?"]),
    _ft("employees",
        ["{S} employs {answer} people.", "{S} has {answer} employees.",
         "{answer} people work for {s}."],
        ["How many people does {name} employ?", "How many employees does {name} have?",
         "How many people work at {name}?"],
        ["{name} has a staff of what size?",
         "What is the number of workers on the payroll of {name}?"]),
    _ft("logo",
        ["{S_poss} logo shows a {answer}.", "{S_poss} logo features a {answer}.",
         "{S} uses a {answer} as its logo."],
        ["What animal is on the logo of {name}?", "Which animal appears in {name}'s logo?",
         "What animal does the logo of {name} show?"],
        ["{name} has which creature as its emblem?",
         "Name the creature pictured in the emblem of {name}."]),
    _ft("director",
        ["{S} is led by {answer}.", "{S_poss} director is {answer}.",
         "{answer} is the director of {s}."],
        ["Who is the director of {name}?", "Who leads {name}?", "Who runs {name}?"],
        ["{name} is currently headed by whom?", "Name the person in charge of {name}."]),
)

FACT_TYPES: dict[str, tuple[FactType, ...]] = {
    "person": PERSON_FACTS, "place": PLACE_FACTS, "organisation": ORG_FACTS}

# Sentences with no fact, for variety (never contain a name other than the subject's).
_FILLERS = {
    "person": ("{S} is well liked by the neighbours.", "{S} enjoys long walks.",
               "{S} is known to friends as patient and kind."),
    "place": ("{S} has narrow streets and a busy market.", "{S} is a quiet place.",
              "Visitors often remark on the old stone bridges of {s}."),
    "organisation": ("{S} has a good reputation.", "{S} is proud of its long history.",
                     "Customers praise the quality of the work of {s}."),
}

# ----------------------------------------------------------------------------------------------
# Generation.


@dataclasses.dataclass(frozen=True)
class FactsConfig:
  num_documents: int = 24
  seed: int = 0
  min_facts: int = 4  # facts per document, drawn uniformly in [min_facts, max_facts]
  max_facts: int = 6
  train_questions_per_fact: int = 3  # at most len(FactType.train)
  heldout_questions_per_fact: int = 2  # at most len(FactType.heldout)
  filler_probability: float = 0.5  # chance of one fact-free sentence per document

  def __post_init__(self):
    if self.num_documents < 1:
      raise ValueError(f"num_documents must be >= 1, got {self.num_documents}")
    most = min(len(f) for f in FACT_TYPES.values())
    if not 1 <= self.min_facts <= self.max_facts <= most:
      raise ValueError(f"need 1 <= min_facts <= max_facts <= {most}, got "
                       f"{self.min_facts}, {self.max_facts}")
    if not 1 <= self.train_questions_per_fact <= 3:
      raise ValueError("train_questions_per_fact must be in [1, 3]")
    if not 1 <= self.heldout_questions_per_fact <= 2:
      raise ValueError("heldout_questions_per_fact must be in [1, 2]")


SMALL = FactsConfig(num_documents=24, seed=0)
LARGE = FactsConfig(num_documents=200, seed=0)


@dataclasses.dataclass(frozen=True)
class Fact:
  type: str  # FactType.name
  answer: str
  slots: Mapping[str, str]  # the extra slots of its sentence/question templates
  sentence: str  # the document sentence that states it


@dataclasses.dataclass(frozen=True)
class Document:
  doc_id: str
  kind: str  # one of KINDS
  entity: str  # the invented name the questions use
  text: str
  facts: tuple[Fact, ...]

  def meta(self) -> dict[str, Any]:
    return {"doc_id": self.doc_id, "kind": self.kind, "entity": self.entity,
            "facts": {f.type: f.answer for f in self.facts}}


def name_pools() -> dict[str, list[str]]:
  """Every candidate name of each pool (syllable pairs minus `_NOT_NAMES`), in a fixed order."""
  pools = {"first": _FIRST, "surname": _SURNAME, "town": _TOWN, "geo": _GEO, "pet": _PET,
           "org": _ORG}
  return {k: [a + b for a in heads for b in tails
              if _pronounceable(a, b) and a + b not in _NOT_NAMES]
          for k, (heads, tails) in pools.items()}


class _Names:
  """Draws names from the pools, never the same word twice in one dataset."""

  def __init__(self, rng: random.Random):
    self._rng = rng
    self._pools = name_pools()
    self._used: set[str] = set()
    self._document_heads: set[str] = set()

  def start_document(self) -> None:
    self._document_heads = set()

  def word(self, pool: str) -> str:
    """An unused name; within one document, not one that starts like another ("Gulholt" is
    not twinned with "Gulaby", "Ruvara" has no brother "Ruvista")."""
    candidates = [w for w in self._pools[pool] if w not in self._used]
    if not candidates:
      raise ValueError(f"ran out of invented {pool} names; lower num_documents")
    distinct = [w for w in candidates if w[:3] not in self._document_heads]
    w = self._rng.choice(distinct or candidates)
    self._used.add(w)
    self._document_heads.add(w[:3])
    return w

  def person(self) -> str:
    return f"{self.word('first')} {self.word('surname')}"

  def town(self) -> str:
    return self.word("town")

  def org(self) -> str:
    return f"{self.word('org')} {self._rng.choice(ORG_KINDS)}"


def _fact_value(kind: str, fact: str, rng: random.Random, names: _Names) -> tuple[str, dict]:
  """(answer, extra slots) of one fact."""
  year = lambda lo, hi: str(rng.randint(lo, hi))  # noqa: E731
  if kind == "person":
    return {
        "birth_year": lambda: (year(1931, 2004), {}),
        "home_town": lambda: (names.town(), {}),
        "profession": lambda: (rng.choice(PROFESSIONS), {}),
        "employer": lambda: (names.org(), {}),
        "pet": lambda: (names.word("pet"), {"species": rng.choice(PET_SPECIES)}),
        "favourite_colour": lambda: (rng.choice(COLOURS), {}),
        "instrument": lambda: (rng.choice(INSTRUMENTS), {}),
        "sibling": lambda: (names.word("first"), {"relation": rng.choice(SIBLINGS)}),
    }[fact]()
  if kind == "place":
    return {
        "founded_year": lambda: (year(1105, 1899), {}),
        "river": lambda: (names.word("geo"), {}),  # "the Sevumb River"; answer "Sevumb"
        "province": lambda: (names.word("geo"), {}),
        "known_for": lambda: (rng.choice(TOWN_PRODUCTS), {}),
        "mayor": lambda: (names.person(), {}),
        "festival_month": lambda: (rng.choice(MONTHS), {}),
        "twin_town": lambda: (names.town(), {}),
    }[fact]()
  return {
      "founded_year": lambda: (year(1801, 2015), {}),
      "founder": lambda: (names.person(), {}),
      "headquarters": lambda: (names.town(), {}),
      "product": lambda: (rng.choice(ORG_PRODUCTS), {}),
      "employees": lambda: (str(rng.randint(12, 950)), {}),
      "logo": lambda: (rng.choice(LOGO_ANIMALS), {}),
      "director": lambda: (names.person(), {}),
  }[fact]()


def _subject_forms(kind: str, entity: str, rng: random.Random) -> tuple[dict, dict]:
  """Slots for the entity by name, and for a later mention (a pronoun or a noun phrase)."""
  by_name = {"S": entity, "s": entity, "S_poss": f"{entity}'s", "s_poss": f"{entity}'s"}
  if kind == "person":
    he = rng.random() < 0.5
    pron, poss = ("he", "his") if he else ("she", "her")
  elif kind == "place":
    pron, poss = "the town", "the town's"
  else:
    pron, poss = "the organisation", "the organisation's"
  later = {"S": pron[0].upper() + pron[1:], "s": pron, "S_poss": poss[0].upper() + poss[1:],
           "s_poss": poss}
  if kind == "organisation":  # "the Keltharn Foundry was founded ..."
    by_name = {"S": f"The {entity}", "s": f"the {entity}", "S_poss": f"The {entity}'s",
               "s_poss": f"the {entity}'s"}
  return by_name, later


def make_document(index: int, kind: str, rng: random.Random, names: _Names,
                  config: FactsConfig) -> Document:
  names.start_document()
  if kind == "person":
    entity = names.person()
  elif kind == "place":
    entity = names.town()
  else:
    entity = names.org()
  types = FACT_TYPES[kind]
  count = rng.randint(config.min_facts, config.max_facts)
  chosen = rng.sample(range(len(types)), count)  # also the order of the sentences
  by_name, later = _subject_forms(kind, entity, rng)
  facts, sentences = [], []
  for position, t in enumerate(chosen):
    ftype = types[t]
    answer, slots = _fact_value(kind, ftype.name, rng, names)
    # The first sentence names the entity; later ones use the name or a pronoun.
    subject = by_name if position == 0 or rng.random() < 0.4 else later
    template = rng.choice(ftype.sentences)
    sentence = template.format(answer=answer, **slots, **subject)
    sentence = sentence[0].upper() + sentence[1:]
    facts.append(Fact(ftype.name, answer, dict(slots), sentence))
    sentences.append(sentence)
  if rng.random() < config.filler_probability:
    filler = rng.choice(_FILLERS[kind]).format(**later)
    sentences.insert(rng.randint(1, len(sentences)), filler[0].upper() + filler[1:])
  return Document(doc_id=f"doc{index:04d}", kind=kind, entity=entity, text=" ".join(sentences),
                  facts=tuple(facts))


def make_documents(config: FactsConfig = SMALL) -> list[Document]:
  """`config.num_documents` documents, kinds in turn (person, place, organisation, ...)."""
  rng = random.Random(config.seed)
  names = _Names(rng)
  return [make_document(i, KINDS[i % len(KINDS)], rng, names, config)
          for i in range(config.num_documents)]


def _question_entity(doc: Document) -> str:
  return f"the {doc.entity}" if doc.kind == "organisation" else doc.entity


def questions(doc: Document, fact: Fact, question_set: str) -> list[tuple[int, str]]:
  """(template index, question) for every template of `question_set` ("train"/"heldout")."""
  ftype = next(t for t in FACT_TYPES[doc.kind] if t.name == fact.type)
  templates = ftype.train if question_set == "train" else ftype.heldout
  out = []
  for i, template in enumerate(templates):
    q = template.format(name=_question_entity(doc), **fact.slots)
    out.append((i, q[0].upper() + q[1:]))
  return out


def qa_examples(documents: Sequence[Document], question_set: str, *, per_fact: int,
                seed: int) -> list[Example]:
  """One Example per (document, fact, question); `per_fact` templates drawn per fact."""
  rng = random.Random(f"{seed}-{question_set}")
  examples = []
  for doc in documents:
    for fact in doc.facts:
      qs = questions(doc, fact, question_set)
      if per_fact < len(qs):
        qs = sorted(rng.sample(qs, per_fact))
      for template, q in qs:
        meta = {"doc_id": doc.doc_id, "kind": doc.kind, "entity": doc.entity,
                "fact": fact.type, "answer": fact.answer, "template": template,
                "question_set": question_set}
        examples.append(Example(context=doc.text, query=q,
                                response=RESPONSE_FORMAT.format(answer=fact.answer), meta=meta))
  return examples


SPLITS = ("train", "test", "documents")


def make_splits(config: FactsConfig = SMALL) -> dict[str, list[Example]]:
  """{"train": training QA, "test": held-out QA, "documents": one Example per document}."""
  docs = make_documents(config)
  return {
      "train": qa_examples(docs, "train", per_fact=config.train_questions_per_fact,
                           seed=config.seed),
      "test": qa_examples(docs, "heldout", per_fact=config.heldout_questions_per_fact,
                          seed=config.seed),
      "documents": [Example(context=d.text, query="", response="", meta=d.meta())
                    for d in docs],
  }
