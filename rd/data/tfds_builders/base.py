"""`ExampleBuilder`: a TFDS builder whose records are `Example`s, stored as array_record.

No TensorFlow anywhere: with `tensorflow_datasets` 4.9, writing goes through TFDS's own copy of
the `tf.train.Example` proto (`tensorflow_datasets.proto.tf_example_pb2`) and the
`array_record` writer, and reading through `builder.as_data_source(split)` (an
`ArrayRecordDataSource` that decodes records with numpy, `ExampleParserNp`). TFDS imports
`tensorflow` lazily (`tfds.core.utils.lazy_imports_utils`) and only touches it on the
`tf.data` paths (`as_dataset`, tfrecord files), which rd never uses. `tests/test_tfds_builders.py`
checks that building and reading leave `tensorflow` out of `sys.modules`.

Features (all text): `context`, `query`, `response`, `meta` (a JSON object) and `contexts` (a
JSON list, for K-context ensemble examples). Records keep the order the builder generates
them in (`disable_shuffling`), so `source[i]` is the builder's i-th example; shuffle in the
grain pipeline.

Data lives under `data_dir`, by default `$RD_CACHE_DIR/tfds` (`rd.cache.cache_dir`), never a
GCS bucket or a hub: `download_and_prepare` always runs with `try_download_gcs=False` (TFDS
4.9.10 also ships with its GCS lookups disabled, `gcs_utils._is_gcs_disabled`), and a builder
gets no download manager at all, only `self.manual_dir` (where a person put the source files)
if it declares `MANUAL_DOWNLOAD_INSTRUCTIONS`.

One fix-up for this environment: TFDS finds a builder's source file (`code_path`, used to look
for a `checksums.tsv`) through the `importlib_resources` backport, which tensorflow-datasets
4.9.10 does not declare as a dependency and which is not installed here; `ExampleBuilder`
overrides `code_path` with `inspect.getfile`.

A builder config carries `seed` and `size` (`ExampleBuilderConfig`); `config_with` makes a
custom config (its name records the changed fields, so it gets its own directory). The
config's fields are also written next to the prepared data (`rd_config.json`) and checked on
every load, so a stale directory for a same-named but different config is an error, not a
silent mismatch.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from rd.cache import cache_dir
from rd.data.examples import Example

FILE_FORMAT = "array_record"
FIELDS = ("context", "query", "response", "meta", "contexts")
CONFIG_FILE = "rd_config.json"

PathLike = str | os.PathLike


def default_data_dir() -> Path:
  """`$RD_CACHE_DIR/tfds` (default `~/.cache/rd/tfds`)."""
  return cache_dir("tfds")


@dataclasses.dataclass(eq=False)
class ExampleBuilderConfig(tfds.core.BuilderConfig):
  """A builder config with the knobs every generated dataset has: a seed and a size (its
  meaning is the builder's: documents, examples, ...; 0 = the builder's default or all)."""
  seed: int = 0
  size: int = 0

  def fields(self) -> dict[str, Any]:
    """The config's own fields (not TFDS's name/version/...), as written to `rd_config.json`."""
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in base}


def config_with(config: ExampleBuilderConfig, **changes: Any) -> ExampleBuilderConfig:
  """A copy of `config` with `changes`, named after them: `small` + seed=3 -> `small_seed3`."""
  unknown = sorted(set(changes) - set(config.fields()))
  if unknown:
    raise ValueError(f"{type(config).__name__} has no field(s) {unknown}; "
                     f"it has {sorted(config.fields())}")
  changes = {k: v for k, v in changes.items() if getattr(config, k) != v}
  if not changes:
    return config
  suffix = "_".join(f"{k}{v}" for k, v in sorted(changes.items()))
  return dataclasses.replace(config, name=f"{config.name}_{suffix}", **changes)


def example_to_record(example: Example) -> dict[str, str]:
  return {"context": example.context, "query": example.query, "response": example.response,
          "meta": json.dumps(dict(example.meta), ensure_ascii=False, sort_keys=True),
          "contexts": json.dumps(list(example.contexts), ensure_ascii=False)}


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def record_to_example(record: dict[str, Any]) -> Example:
  """A decoded TFDS record (bytes or str values) back to an `Example`."""
  return Example(context=_text(record["context"]), query=_text(record["query"]),
                 response=_text(record["response"]), meta=json.loads(_text(record["meta"])),
                 contexts=tuple(json.loads(_text(record["contexts"]))))


class ExampleBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: subclasses set `VERSION`, `BUILDER_CONFIGS` (of `ExampleBuilderConfig`),
  `SPLITS`, optionally `DESCRIPTION` and `MANUAL_DOWNLOAD_INSTRUCTIONS`, and implement
  `examples(split)`. They are registered with TFDS under their snake_case class name.

  Always built as array_record (`file_format` defaults to it)."""

  SPLITS: tuple[str, ...] = ("train",)
  DESCRIPTION: str = ""
  builder_config: ExampleBuilderConfig

  def __init__(self, *, file_format: str | None = None, **kwargs: Any):
    if kwargs.get("data_dir") is None:  # also when TFDS passes data_dir=None explicitly
      kwargs["data_dir"] = os.fspath(default_data_dir())
    super().__init__(file_format=file_format or FILE_FORMAT, **kwargs)
    self._manual_dir: Path | None = None

  @abc.abstractmethod
  def examples(self, split: str) -> Iterable[Example]:
    """The examples of `split`, in a deterministic order."""

  @classmethod
  def config_named(cls, name: str) -> ExampleBuilderConfig:
    """One of `BUILDER_CONFIGS`, by name (start `config_with` from it)."""
    for config in cls.BUILDER_CONFIGS:
      if config.name == name:
        return config
    raise ValueError(f"{cls.name} has no config {name!r}; it has "
                     f"{[c.name for c in cls.BUILDER_CONFIGS]}")

  @property
  def manual_dir(self) -> Path:
    """Where the source files are (`prepare(manual_dir=...)`); only while preparing."""
    if self._manual_dir is None:
      raise ValueError(f"{self.name}: no manual_dir; pass prepare(..., manual_dir=DIR) "
                       f"(and set MANUAL_DOWNLOAD_INSTRUCTIONS on the builder)")
    return self._manual_dir

  def download_and_prepare(self, *, download_config=None, file_format=None, **kwargs) -> None:
    """TFDS's, but offline even when called directly (`tfds.data_source`, `tfds.load`): the
    GCS mirror lookup is switched off, and the file format defaults to array_record."""
    if download_config is None:
      download_config = tfds.download.DownloadConfig(try_download_gcs=False)
    elif download_config.try_download_gcs:
      download_config = download_config.replace(try_download_gcs=False)
    super().download_and_prepare(download_config=download_config,
                                 file_format=file_format or FILE_FORMAT, **kwargs)

  # -- TFDS hooks ------------------------------------------------------------------------------

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """The builder's source file. TFDS's own lookup needs the `importlib_resources` backport,
    which tensorflow-datasets 4.9.10 does not declare as a dependency (absent here)."""
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION or (type(self).__doc__ or "").strip(),
        features=tfds.features.FeaturesDict({name: text for name in FIELDS}),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    # The builder never sees the download manager: no download can happen from here.
    if self.MANUAL_DOWNLOAD_INSTRUCTIONS:
      self._manual_dir = Path(os.fspath(dl_manager.manual_dir))
    return {split: self._generate_examples(split) for split in self.SPLITS}

  def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, str]]]:
    for i, example in enumerate(self.examples(split)):
      yield i, example_to_record(example)


# ------------------------------------------------------------------------------------------------
# Building and reading.


def get_builder(name_or_builder: str | tfds.core.DatasetBuilder, *,
                data_dir: PathLike | None = None,
                config: str | ExampleBuilderConfig | None = None) -> tfds.core.DatasetBuilder:
  """A builder from a registered name ("rd_facts", "rd_facts/large") or a builder (returned
  as is). `data_dir` defaults to `$RD_CACHE_DIR/tfds`."""
  if not isinstance(name_or_builder, str):
    if data_dir is not None or config is not None:
      raise ValueError("pass data_dir/config when constructing the builder, not with it")
    return name_or_builder
  import rd.data.tfds_builders  # noqa: F401  (registers rd's builders)
  name, _, config_name = name_or_builder.partition("/")
  if config_name and config is not None:
    raise ValueError(f"{name_or_builder!r} names a config already; do not pass config too")
  data_dir = os.fspath(data_dir) if data_dir is not None else os.fspath(default_data_dir())
  cls = tfds.builder_cls(name)
  if issubclass(cls, ExampleBuilder):
    return cls(data_dir=data_dir, config=config or config_name or None)
  return tfds.builder(name_or_builder, data_dir=data_dir,
                      **({"config": config} if config is not None else {}))


def download_config(manual_dir: PathLike | None = None, **kwargs: Any):
  """A `DownloadConfig` that never goes to the network (no GCS mirror)."""
  return tfds.download.DownloadConfig(
      try_download_gcs=False, manual_dir=os.fspath(manual_dir) if manual_dir else None,
      **kwargs)


def _check_config(builder: tfds.core.DatasetBuilder) -> None:
  config = getattr(builder, "builder_config", None)
  if not isinstance(config, ExampleBuilderConfig):
    return
  path = Path(os.fspath(builder.data_dir)) / CONFIG_FILE
  want = config.fields()
  if not path.exists():
    path.write_text(json.dumps(want, sort_keys=True) + "\n", encoding="utf-8")
    return
  have = json.loads(path.read_text(encoding="utf-8"))
  if have != want:
    raise ValueError(f"{builder.data_dir} was prepared with config {have}, not {want}; give "
                     f"the config another name (config_with) or delete that directory")


def prepare(name_or_builder: str | tfds.core.DatasetBuilder, *,
            data_dir: PathLike | None = None,
            config: str | ExampleBuilderConfig | None = None,
            manual_dir: PathLike | None = None) -> tfds.core.DatasetBuilder:
  """Builds the dataset if it is not there yet (offline, array_record); returns the builder."""
  builder = get_builder(name_or_builder, data_dir=data_dir, config=config)
  builder.download_and_prepare(download_config=download_config(manual_dir),
                               file_format=FILE_FORMAT)
  _check_config(builder)
  return builder


class ExampleSource(Sequence[Example]):
  """Random access to one split as `Example`s (a grain-compatible data source)."""

  def __init__(self, records: Sequence[dict[str, Any]]):
    self._records = records

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} examples")
    return record_to_example(self._records[index])

  def __repr__(self) -> str:
    return f"ExampleSource({len(self)} examples)"


def data_source(name_or_builder: str | tfds.core.DatasetBuilder, split: str, *,
                data_dir: PathLike | None = None,
                config: str | ExampleBuilderConfig | None = None,
                manual_dir: PathLike | None = None) -> ExampleSource:
  """Prepares (if needed) and opens one split for random access, as `Example`s."""
  builder = prepare(name_or_builder, data_dir=data_dir, config=config, manual_dir=manual_dir)
  return ExampleSource(builder.as_data_source(split))


def load_examples(name_or_builder: str | tfds.core.DatasetBuilder, split: str,
                  data_dir: PathLike | None = None, *,
                  config: str | ExampleBuilderConfig | None = None,
                  manual_dir: PathLike | None = None) -> list[Example]:
  """All of one split, as a list of `Example`s (preparing the dataset first if needed)."""
  source = data_source(name_or_builder, split, data_dir=data_dir, config=config,
                       manual_dir=manual_dir)
  return [source[i] for i in range(len(source))]
