"""A task for composed distillation: more in-context examples than a context window holds.

Snell et al.'s composed distillation internalizes many in-context examples, a window's worth at
a time. This task ("agents") has n items, each with exactly one example that answers it:

    Question: What is the codename of our agent in France?
    Answer: Falcon

Countries and codenames are drawn without replacement (codenames are common English words the
Gemma 3 tokenizer spells as one token), so nothing but the item's own example tells its answer:
the base model answers no query zero-shot.

Queries (`Example.query`) name the agent by its nationality, in wordings the examples never use:

  train  "What is the codename of our agent in France?"     (the example's own question)
         "Which codename does our French agent use?"        (TRAIN_QUERIES)
  test   "Our French agent is known by which codename?"     (HELDOUT_QUERIES: other wordings)

The held-out questions test what the student internalized, not the training questions it saw;
and since "French" is not "France", a lexical retriever (BM25 over the examples) cannot find the
example from a held-out question, while the model itself relates the two words (measured with
Gemma 3 270M: see `MEASURED`).

`make_task(TaskConfig(...))` gives `Example`s (all deterministic in the config's seed):

* `examples`: n, context = the example's text (as above), meta {item, country, demonym, answer};
* `train`: per item, `train_lexical` (0/1) copies of its example's own question plus
  `train_per_item` nationality questions; context = the item's example, response " <codename>\\n";
* `test`: per item, `heldout_per_item` held-out questions, same layout.

meta of a query: item, answer, country, demonym, form ("lexical" / "train" / "heldout"),
template (index into its template tuple).
"""

from __future__ import annotations

import dataclasses
import random

from rd.data.examples import Example

# How the job renders prompts: examples joined by a blank line, then the question.
EXAMPLE_FORMAT = "Question: What is the codename of our agent in {country}?\nAnswer: {answer}"
EXAMPLE_SEPARATOR = "\n\n"
TEACHER_TEMPLATE = "{context}\n\nQuestion: {query}\nAnswer:"
STUDENT_TEMPLATE = "Question: {query}\nAnswer:"
RESPONSE_FORMAT = " {answer}\n"

LEXICAL_QUERY = "What is the codename of our agent in {country}?"
TRAIN_QUERIES = ("Which codename does our {demonym} agent use?",
                 "Tell me the codename of our {demonym} agent.")
HELDOUT_QUERIES = ("Our {demonym} agent is known by which codename?",
                   "What is the codename of our {demonym} agent?")

# (country, demonym): each a single Gemma 3 token, and never the same word (a retriever that
# matched "Saudi" in both would find the example).
COUNTRIES = (
    ("France", "French"), ("Germany", "German"), ("Spain", "Spanish"), ("Italy", "Italian"),
    ("Japan", "Japanese"), ("China", "Chinese"), ("Russia", "Russian"), ("Brazil", "Brazilian"),
    ("Mexico", "Mexican"), ("Canada", "Canadian"), ("India", "Indian"), ("Egypt", "Egyptian"),
    ("Greece", "Greek"), ("Turkey", "Turkish"), ("Sweden", "Swedish"), ("Norway", "Norwegian"),
    ("Finland", "Finnish"), ("Denmark", "Danish"), ("Poland", "Polish"), ("Ireland", "Irish"),
    ("Scotland", "Scottish"), ("Wales", "Welsh"), ("England", "English"),
    ("Netherlands", "Dutch"), ("Belgium", "Belgian"), ("Switzerland", "Swiss"),
    ("Austria", "Austrian"), ("Portugal", "Portuguese"), ("Hungary", "Hungarian"),
    ("Chile", "Chilean"), ("Peru", "Peruvian"), ("Colombia", "Colombian"), ("Cuba", "Cuban"),
    ("Australia", "Australian"), ("Kenya", "Kenyan"), ("Nigeria", "Nigerian"),
    ("Ethiopia", "Ethiopian"), ("Morocco", "Moroccan"), ("Iran", "Iranian"), ("Iraq", "Iraqi"),
    ("Israel", "Israeli"), ("Korea", "Korean"), ("Vietnam", "Vietnamese"), ("Thailand", "Thai"),
    ("Indonesia", "Indonesian"), ("Pakistan", "Pakistani"), ("Ukraine", "Ukrainian"),
    ("Romania", "Romanian"), ("Bulgaria", "Bulgarian"), ("Serbia", "Serbian"),
    ("Croatia", "Croatian"), ("Iceland", "Icelandic"), ("Mongolia", "Mongolian"),
    ("Jamaica", "Jamaican"), ("Venezuela", "Venezuelan"), ("Ghana", "Ghanaian"),
    ("Lebanon", "Lebanese"), ("Syria", "Syrian"), ("Afghanistan", "Afghan"),
    ("Malaysia", "Malaysian"), ("Estonia", "Estonian"), ("Malta", "Maltese"))

# Codenames: one Gemma 3 token each (with the leading space), none a country or a demonym.
CODENAMES = tuple("""
Amber Anchor Arrow Badger Basil Beacon Bear Beaver Birch Bison Bronze Cactus Canyon Cedar
Cherry Cinnamon Clover Cobalt Cobra Comet Compass Copper Coral Crane Crow Daisy Dolphin Dove
Eagle Elk Elm Ember Falcon Fern Finch Fox Gecko Ginger Glacier Granite Hammer Harbor Hare Hawk
Hazel Heron Holly Hornet Iris Ivory Ivy Jade Jaguar Jasper Juniper Lantern Lark Lemon Lily
Lotus Lynx Mango Maple Marble Marlin Meadow Mint Mole Moose Mosaic Moss Oak Olive Opal Orchid
Otter Owl Panther Pearl Pebble Pelican Pepper Pike Pine Plum Poppy Puma Quartz Rabbit Raven
Robin Rose Ruby Sable Sage Salmon Scorpion Seal Shark Silver Sparrow Spider Steel Summit Swan
Thunder Tiger Trident Trout Tulip Tuna Turtle Velvet Violet Viper Walnut Whale Willow Wolf Wren
""".split())

# Gemma 3 270M (base, greedy exact match, 32 items) with the relevant example in its prompt,
# alone or among 5 (at a random place; 5 is what a 128-token window holds), by question wording.
# Examples in question-answer form were chosen over a plain sentence ("Our agent in France is
# codenamed Falcon.": 4-8% among 11) or "France: Falcon" lines (8-12% among 3-6). Without the
# example the model answers nothing right (0 of 24).
MEASURED = {
    # wording: (alone, among 5)
    "What is the codename of our agent in France?": (1.00, 0.62),
    "Which codename does our French agent use?": (1.00, 0.38),
    "Our French agent is known by which codename?": (1.00, 0.28),
    "What is the codename of our French agent?": (0.69, 0.28),
}


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  num_items: int = 32
  train_lexical: int = 1  # training queries per item that repeat its example's question (0/1)
  train_per_item: int = 1  # nationality questions per item for training (TRAIN_QUERIES)
  heldout_per_item: int = 2  # held-out questions per item (HELDOUT_QUERIES)
  seed: int = 0

  def __post_init__(self):
    limit = min(len(COUNTRIES), len(CODENAMES))
    if not 1 <= self.num_items <= limit:
      raise ValueError(f"num_items must be in [1, {limit}], got {self.num_items}")
    if self.train_lexical not in (0, 1):
      raise ValueError(f"train_lexical must be 0 or 1, got {self.train_lexical}")
    if not 0 <= self.train_per_item <= len(TRAIN_QUERIES):
      raise ValueError(f"train_per_item must be in [0, {len(TRAIN_QUERIES)}]")
    if self.train_lexical + self.train_per_item < 1:
      raise ValueError("no training query per item: set train_lexical or train_per_item")
    if not 1 <= self.heldout_per_item <= len(HELDOUT_QUERIES):
      raise ValueError(f"heldout_per_item must be in [1, {len(HELDOUT_QUERIES)}]")


def example_text(country: str, answer: str) -> str:
  return EXAMPLE_FORMAT.format(country=country, answer=answer)


def _query(item: Example, form: str, template: int, text: str) -> Example:
  meta = {**item.meta, "form": form, "template": template}
  return Example(context=item.context, query=text,
                 response=RESPONSE_FORMAT.format(answer=item.meta["answer"]), meta=meta)


def make_task(cfg: TaskConfig = TaskConfig()) -> dict[str, list[Example]]:
  """The task's splits (see the module docstring); the same config gives the same task."""
  rng = random.Random(cfg.seed)
  countries = rng.sample(COUNTRIES, cfg.num_items)
  codenames = rng.sample(CODENAMES, cfg.num_items)
  examples = [Example(context=example_text(country, answer), query="", response="",
                      meta={"item": i, "country": country, "demonym": demonym, "answer": answer})
              for i, ((country, demonym), answer) in enumerate(zip(countries, codenames))]
  train, test = [], []
  for item in examples:
    names = {"country": item.meta["country"], "demonym": item.meta["demonym"]}
    if cfg.train_lexical:
      train.append(_query(item, "lexical", 0, LEXICAL_QUERY.format(**names)))
    for t in range(cfg.train_per_item):
      train.append(_query(item, "train", t, TRAIN_QUERIES[t].format(**names)))
    for t in range(cfg.heldout_per_item):
      test.append(_query(item, "heldout", t, HELDOUT_QUERIES[t].format(**names)))
  return {"examples": examples, "train": train, "test": test}
