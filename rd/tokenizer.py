"""Tokenizers, from a Hugging Face directory or a GGUF file, never from the network.

A GGUF file carries its tokenizer in metadata (`tokenizer.ggml.*`). transformers' GGUF tokenizer
builders convert it; rd reads the metadata itself and hands it to them, because transformers' own
GGUF reader imports torch, which rd does not install (a fresh `pip install -e .` has none). For a
262k-token vocabulary the conversion takes ~30 s, so the converted tokenizer is saved under
`$RD_CACHE_DIR/tokenizers/<name>-<key>/` (key: path, size and mtime of the GGUF) and loaded from
there next time. The conversion is checked once against the metadata (every token string and
special id), and every load checks that BOS/EOS are added as the model expects: Gemma's base
model, for one, must see `<bos>` first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rd.cache import cache_dir
from rd.embedded import resolve_model_path
from rd.weights.gguf_file import GGUFFile

if TYPE_CHECKING:
  from transformers import PreTrainedTokenizerFast

_CHECK_TEXT = "Hello world! Tokenizers must round-trip this sentence."
_SPECIAL_FILE = "gguf_special_tokens.json"  # what the GGUF metadata says, kept next to the cache


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
  """A transformers fast tokenizer for a model directory, a `.gguf` file or the default alias."""
  path = resolve_model_path(path)
  if path.is_dir():
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
      raise FileNotFoundError(f"{path} has no tokenizer.json or tokenizer_config.json")
    return _auto_tokenizer(path)
  if path.suffix == ".gguf":
    return _from_gguf(path)
  raise ValueError(f"{path}: expected a model directory or a .gguf file")


def _auto_tokenizer(directory: Path, **kwargs):
  # huggingface_hub reads HF_HUB_OFFLINE when first imported, so set it before transformers
  # loads; local_files_only covers the case where it was imported earlier.
  os.environ["HF_HUB_OFFLINE"] = "1"
  from transformers import AutoTokenizer  # pylint: disable=import-outside-toplevel
  tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, **kwargs)
  if not tok.is_fast:
    raise ValueError(f"{directory}: transformers gave a slow tokenizer; rd needs a fast one")
  return tok


def _from_gguf(path: Path):
  cached = cache_dir("tokenizers") / f"{path.stem}-{_cache_key(path)}"
  if not (cached / _SPECIAL_FILE).is_file():  # written last: its presence marks a complete entry
    _convert_into(path, cached)
  tok = _auto_tokenizer(cached)
  _check_special_tokens(tok, json.loads((cached / _SPECIAL_FILE).read_text()), path)
  return tok


def _cache_key(path: Path) -> str:
  """Cheap identity of a GGUF file: hashing gigabytes on every load would cost more than it
  saves, and any rewrite of the file changes its mtime."""
  st = path.stat()
  ident = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
  return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _convert_into(path: Path, cached: Path) -> None:
  """Converts the GGUF tokenizer with transformers, checks it, and publishes it atomically."""
  logging.getLogger(__name__).info("Converting the tokenizer of %s (once; cached in %s)",
                                   path, cached)
  metadata = GGUFFile(path).metadata
  special = _expected_special_tokens(metadata, path)
  tok = _from_metadata(metadata)
  _check_vocabulary(tok, metadata, path)
  if (tok.add_bos_token, tok.add_eos_token) != (special["add_bos"], special["add_eos"]):
    # transformers normally follows the GGUF flags; where it does not, llama.cpp's behaviour wins.
    tok.add_bos_token, tok.add_eos_token = special["add_bos"], special["add_eos"]
  _check_special_tokens(tok, special, path)
  tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}."))
  try:
    tok.save_pretrained(str(tmp))
    (tmp / _SPECIAL_FILE).write_text(json.dumps({**special, "source": str(path)}, indent=1))
    if cached.exists():  # a stale, incomplete entry (no special-tokens file)
      shutil.rmtree(cached)
    os.rename(tmp, cached)
  except OSError:
    if not (cached / _SPECIAL_FILE).is_file():  # not a concurrent writer winning the race
      raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _from_metadata(metadata: dict) -> PreTrainedTokenizerFast:
  """What `AutoTokenizer.from_pretrained(dir, gguf_file=...)` builds, without its torch import:
  transformers' key mapping, tokenizer builders and defaults, fed with our metadata."""
  os.environ["HF_HUB_OFFLINE"] = "1"
  # pylint: disable=import-outside-toplevel
  from transformers import PreTrainedTokenizerFast
  from transformers.integrations.gguf import gguf_tokenizer_mapping as hf_gguf
  # pylint: enable=import-outside-toplevel
  plain = lambda v: v.tolist() if isinstance(v, np.ndarray) else v  # noqa: E731
  fields = {group: {name: plain(metadata[f"tokenizer.{key}"]) for key, name in keys.items()
                    if f"tokenizer.{key}" in metadata}
            for group, keys in hf_gguf.GGUF_TOKENIZER_MAPPING.items()}
  spec, init = fields["tokenizer"], fields["tokenizer_config"]
  if spec.get("tokenizer_type") == "llama":  # transformers' default for SentencePiece files
    init.setdefault("add_bos_token", True)
  tokens = spec["tokens"]
  for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                    ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
    token_id = metadata.get(f"tokenizer.ggml.{key}")
    init[name] = tokens[int(token_id)] if token_id is not None else None
  backend, extra = hf_gguf.convert_gguf_tokenizer(metadata["general.architecture"], spec)
  return PreTrainedTokenizerFast(tokenizer_object=backend, **init, **extra)


def _expected_special_tokens(metadata: dict, path: Path) -> dict:
  """What llama.cpp does with this GGUF: which ids are BOS/EOS and whether it adds them."""
  if "tokenizer.ggml.tokens" not in metadata:
    raise ValueError(f"{path} has no tokenizer metadata (tokenizer.ggml.tokens)")
  get = lambda key: metadata.get(f"tokenizer.ggml.{key}")  # noqa: E731
  # llama.cpp's defaults when the flags are absent: SentencePiece ("llama") vocabularies add BOS.
  add_bos = get("add_bos_token")
  if add_bos is None:
    add_bos = get("model") == "llama"
  return {"bos_token_id": get("bos_token_id"), "eos_token_id": get("eos_token_id"),
          "add_bos": bool(add_bos), "add_eos": bool(get("add_eos_token") or False)}


def _check_vocabulary(tok, metadata: dict, path: Path) -> None:
  """Every id must map to the GGUF's token string."""
  tokens = metadata["tokenizer.ggml.tokens"]
  if metadata.get("tokenizer.ggml.model") == "llama":
    # SentencePiece vocabularies: llama.cpp keeps user-defined tokens (Gemma's runs of spaces)
    # with literal spaces, HF writes them with the "▁" meta symbol; both encode the same text.
    tokens = [t.replace(" ", "▁") for t in tokens]
  converted = tok.convert_ids_to_tokens(list(range(len(tokens))))
  bad = [i for i, (a, b) in enumerate(zip(converted, tokens)) if a != b]
  if len(tok) != len(tokens) or bad:
    raise ValueError(f"{path}: converted tokenizer disagrees with the GGUF vocabulary "
                     f"({len(tok)} vs {len(tokens)} tokens; {len(bad)} differ, e.g. ids {bad[:5]})")


def _check_special_tokens(tok, special: dict, path: Path) -> None:
  """Encodes a sentence and checks BOS/EOS placement and a lossless round trip."""
  ids = tok(_CHECK_TEXT)["input_ids"]
  problems = []
  for name, at in (("bos", 0), ("eos", -1)):
    want_id, added = special[f"{name}_token_id"], special[f"add_{name}"]
    if added and getattr(tok, f"{name}_token_id") != want_id:
      problems.append(f"{name}_token_id is {getattr(tok, f'{name}_token_id')}, GGUF says {want_id}")
    if added != (ids[at] == want_id):
      problems.append(f"{name} {'missing' if added else 'added'} at position {at}")
  if tok.decode(ids, skip_special_tokens=True) != _CHECK_TEXT:
    problems.append(f"round trip gave {tok.decode(ids, skip_special_tokens=True)!r}")
  if problems:
    raise ValueError(f"{path}: tokenizer does not match its GGUF metadata: {'; '.join(problems)}")
