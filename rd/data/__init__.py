"""Data: `Example`s, prompt templates, segment-wise tokenization, and the grain pipeline."""

from rd.data.examples import (Example, read_alpaca, read_alpaca_paired, read_jsonl,
                              write_jsonl)
from rd.data.packing import pack, pack_batch
from rd.data.pipeline import make_dataset, make_iterator
from rd.data.templates import Template
from rd.data.tokenize import Buckets, Featurizer, Tokenized, collate, model_inputs

__all__ = ["Buckets", "Example", "Featurizer", "Template", "Tokenized", "collate",
           "make_dataset", "make_iterator", "model_inputs", "pack", "pack_batch", "read_alpaca",
           "read_alpaca_paired", "read_jsonl", "write_jsonl"]
