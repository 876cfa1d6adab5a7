"""TFDS builders: array_record, built and read without TensorFlow and without the network."""

import dataclasses
import json
import pickle
import socket
import sys

import grain
import pytest
import tensorflow_datasets as tfds

from rd.tasks import facts
from rd.data.examples import Example, read_jsonl, write_jsonl
from rd.data.tfds_builders import (ExampleBuilder, RdFacts, config_with, data_source,
                                   default_data_dir, download_config, example_to_record,
                                   get_builder, load_examples, prepare, record_to_example)
from rd.data.tfds_builders.__main__ import main as cli_main

TINY = config_with(RdFacts.config_named("small"), size=4)  # a quick custom config


@pytest.fixture
def offline_without_tensorflow(monkeypatch):
  """Fails any attempt to open a network connection, and checks that TensorFlow was never
  imported. (TensorFlow is not installed in rd's environment, so a code path that needed it
  would fail outright; where it is installed, the sys.modules check catches an import. A
  `sys.modules["tensorflow"] = None` block does not work: etils takes any entry there to mean
  TensorFlow is loaded.)"""

  def no_network(*args, **kwargs):
    raise AssertionError(f"test: network access attempted {args}")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "create_connection", no_network)
  yield
  assert "tensorflow" not in sys.modules


def test_the_guard_blocks_the_network(offline_without_tensorflow):
  with pytest.raises(AssertionError, match="network"):
    socket.create_connection(("localhost", 9))


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def test_rd_facts_builds_and_reads_back_the_generator(small_dir, offline_without_tensorflow):
  builder = prepare("rd_facts", data_dir=small_dir)
  assert builder.builder_config.name == "small"
  assert str(builder.info.file_format.value) == "array_record"
  files = sorted(p.name for p in builder.data_path.iterdir())
  assert "rd_facts-train.array_record-00000-of-00001" in files
  assert "rd_config.json" in files
  expected = facts.make_splits(facts.SMALL)
  for split in facts.SPLITS:
    assert builder.info.splits[split].num_examples == len(expected[split])
    assert load_examples("rd_facts", split, small_dir) == expected[split]


def test_tensorflow_never_imported():
  """After the builds and reads above (and TFDS's own imports)."""
  assert "tensorflow" not in sys.modules


def test_data_source_is_random_access(small_dir, offline_without_tensorflow):
  source = data_source("rd_facts/small", "test", data_dir=small_dir)
  expected = facts.make_splits(facts.SMALL)["test"]
  assert len(source) == len(expected)
  assert source[0] == expected[0] and source[-1] == expected[-1]
  assert source[5] == expected[5]  # generation order is kept (no TFDS shuffling)
  assert source[2:5] == expected[2:5]
  with pytest.raises(IndexError):
    source[len(source)]
  ds = grain.MapDataset.source(source).shuffle(seed=0)
  assert sorted(e.query for e in ds) == sorted(e.query for e in expected)
  assert pickle.loads(pickle.dumps(source))[7] == expected[7]  # for grain worker processes


def test_plain_tfds_data_source_works_offline(tmp_path, offline_without_tensorflow):
  """`tfds.data_source` by name (after `import rd.data.tfds_builders`) builds with TFDS's
  default download config, offline, as array_record."""
  records = tfds.data_source("rd_facts", split="documents", data_dir=str(tmp_path))
  assert len(records) == 24
  assert record_to_example(records[0]) == facts.make_splits(facts.SMALL)["documents"][0]


def test_builder_objects_and_configs(small_dir):
  builder = get_builder("rd_facts", data_dir=small_dir, config="large")
  assert builder.builder_config.size == 200 and builder.builder_config.seed == 0
  assert [c.name for c in RdFacts.BUILDER_CONFIGS] == ["small", "large"]
  assert RdFacts.config_named("large") is RdFacts.BUILDER_CONFIGS[1]
  with pytest.raises(ValueError, match="no config"):
    RdFacts.config_named("medium")
  assert get_builder(builder) is builder
  with pytest.raises(ValueError, match="names a config"):
    get_builder("rd_facts/small", config="large")


def test_seeds_and_sizes(small_dir):
  a = load_examples("rd_facts", "documents", small_dir, config=TINY)
  assert a == facts.make_splits(facts.FactsConfig(num_documents=4, seed=0))["documents"]
  seeded = config_with(TINY, seed=7)
  assert seeded.name == "small_size4_seed7" and seeded.seed == 7 and seeded.size == 4
  b = load_examples(RdFacts(data_dir=str(small_dir), config=seeded), "documents")
  assert b == facts.make_splits(facts.FactsConfig(num_documents=4, seed=7))["documents"]
  assert {e.context for e in a}.isdisjoint({e.context for e in b})
  assert load_examples(RdFacts(data_dir=str(small_dir), config=seeded), "documents") == b
  assert config_with(TINY, size=4) is TINY
  with pytest.raises(ValueError, match="no field"):
    config_with(TINY, colour="red")


def test_stale_directory_for_a_changed_config_is_an_error(tmp_path):
  prepare("rd_facts", data_dir=tmp_path, config=TINY)
  changed = dataclasses.replace(TINY, seed=99)  # same name, other content
  with pytest.raises(ValueError, match="prepared with config"):
    prepare("rd_facts", data_dir=tmp_path, config=changed)


def test_default_data_dir_is_the_rd_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path / "cache"))
  assert default_data_dir() == tmp_path / "cache" / "tfds"
  builder = prepare("rd_facts", config=TINY)
  assert str(builder.data_dir).startswith(str(tmp_path / "cache" / "tfds" / "rd_facts"))
  assert download_config().try_download_gcs is False
  assert str(tfds.builder("rd_facts", data_dir=None).data_dir).startswith(str(tmp_path))


class LocalJsonl(ExampleBuilder, skip_registration=True):
  """Examples from <manual_dir>/<split>.jsonl (a builder that reads local files)."""
  name = "rd_test_local_jsonl"
  VERSION = "1.0.0"
  SPLITS = ("train", "validation")
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Put train.jsonl and validation.jsonl in the manual dir."

  def examples(self, split):
    return read_jsonl(self.manual_dir / f"{split}.jsonl")


def test_manual_dir_builder_round_trips_every_field(tmp_path, offline_without_tensorflow):
  manual = tmp_path / "manual"
  manual.mkdir()
  train = [Example("ctx {with} braces", "q1", " r1\n", {"k": [1, 2], "é": "ü"}),
           Example("", "q2", "r2", {}, contexts=("rule A", "rule B"))]
  validation = [Example("c", "q", "r")]
  write_jsonl(manual / "train.jsonl", train)
  write_jsonl(manual / "validation.jsonl", validation)
  builder = LocalJsonl(data_dir=str(tmp_path / "data"))
  with pytest.raises(ValueError, match="manual_dir"):
    builder.manual_dir
  builder = prepare(builder, manual_dir=manual)
  assert load_examples(builder, "train") == train
  assert load_examples(builder, "validation") == validation
  assert load_examples(builder, "train")[1].contexts == ("rule A", "rule B")


def test_record_conversion():
  e = Example("c", "q", " r", {"a": 1}, contexts=("x",))
  record = example_to_record(e)
  assert set(record) == {"context", "query", "response", "meta", "contexts"}
  assert json.loads(record["meta"]) == {"a": 1}
  assert record_to_example(record) == e
  assert record_to_example({k: v.encode() for k, v in record.items()}) == e


def test_cli_exports_jsonl(tmp_path, capsys):
  out = tmp_path / "out"
  assert cli_main(["rd_facts/small", "--data_dir", str(tmp_path / "data"), "--seed", "3",
                   "--size", "5", "--to_jsonl", str(out)]) == 0
  expected = facts.make_splits(facts.FactsConfig(num_documents=5, seed=3))
  for split in facts.SPLITS:
    assert read_jsonl(out / f"{split}.jsonl") == expected[split]
  printed = capsys.readouterr().out
  assert "small_seed3_size5" in printed and "documents: 5 examples" in printed
