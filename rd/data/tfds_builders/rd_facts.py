"""`rd_facts`: the invented-entity knowledge-injection dataset (`rd.tasks.facts`) as TFDS.

Configs: `small` (24 documents, the embedded job's default) and `large` (200 documents), both
seed 0; `config_with(RdFacts.config_named("small"), seed=3)` or
`python -m rd.data.tfds_builders rd_facts/small --seed 3` for others.
Splits: `train` (training questions), `test` (held-out paraphrases of the same facts),
`documents` (one per document; meta holds its facts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import tensorflow_datasets as tfds

from rd.tasks import facts
from rd.data.examples import Example
from rd.data.tfds_builders.base import ExampleBuilder, ExampleBuilderConfig


@dataclasses.dataclass(eq=False)
class FactsBuilderConfig(ExampleBuilderConfig):
  """`size` = number of documents; the other fields as in `facts.FactsConfig`."""
  min_facts: int = facts.FactsConfig.min_facts
  max_facts: int = facts.FactsConfig.max_facts
  train_questions_per_fact: int = facts.FactsConfig.train_questions_per_fact
  heldout_questions_per_fact: int = facts.FactsConfig.heldout_questions_per_fact

  def facts_config(self) -> facts.FactsConfig:
    return facts.FactsConfig(
        num_documents=self.size, seed=self.seed, min_facts=self.min_facts,
        max_facts=self.max_facts, train_questions_per_fact=self.train_questions_per_fact,
        heldout_questions_per_fact=self.heldout_questions_per_fact)


class RdFacts(ExampleBuilder):
  """Documents about invented people, towns and organisations, with training questions and
  held-out paraphrased questions about their facts (see `rd.tasks.facts`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  SPLITS = facts.SPLITS
  BUILDER_CONFIGS = [
      FactsBuilderConfig(name="small", size=facts.SMALL.num_documents, seed=facts.SMALL.seed,
                         description="24 documents (the embedded job's default)"),
      FactsBuilderConfig(name="large", size=facts.LARGE.num_documents, seed=facts.LARGE.seed,
                         description="200 documents"),
  ]
  DEFAULT_CONFIG_NAME = "small"
  builder_config: FactsBuilderConfig

  def examples(self, split: str) -> Iterable[Example]:
    return facts.make_splits(self.builder_config.facts_config())[split]
