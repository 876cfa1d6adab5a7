"""TFDS builders (array_record, no TensorFlow) for rd's datasets, and how to read them.

    from rd.data.tfds_builders import load_examples, data_source
    train = load_examples("rd_facts", "train")              # list[Example], config "small"
    test = data_source("rd_facts/large", "test")             # random access, grain-ready

`python -m rd.data.tfds_builders rd_facts/small --to_jsonl DIR` builds and writes
`DIR/<split>.jsonl` to look at. Data goes to `$RD_CACHE_DIR/tfds` unless `data_dir` says
otherwise; nothing is downloaded. See `base.py` for how this works without TensorFlow.
"""

from rd.data.tfds_builders.base import (ExampleBuilder, ExampleBuilderConfig, ExampleSource,
                                        config_with, data_source, default_data_dir,
                                        download_config, example_to_record, get_builder,
                                        load_examples, prepare, record_to_example)
from rd.data.tfds_builders.rd_facts import FactsBuilderConfig, RdFacts
from rd.data.tfds_builders.super_natural_instructions import (SniBuilderConfig,
                                                              SuperNaturalInstructions)
from rd.data.tfds_builders.task_suite import RdTaskSuite, TaskSuiteBuilderConfig

__all__ = ["ExampleBuilder", "ExampleBuilderConfig", "ExampleSource", "FactsBuilderConfig",
           "RdFacts", "RdTaskSuite", "SniBuilderConfig", "SuperNaturalInstructions",
           "TaskSuiteBuilderConfig", "config_with", "data_source", "default_data_dir",
           "download_config", "example_to_record", "get_builder", "load_examples", "prepare",
           "record_to_example"]
