"""The benchmark job: its workloads are the step they claim to be, and its tables print."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from launch import bench_workloads as bw
from rd import sharding
from rd.models import from_hf_config
from tests import tiny
from rd.weights.load import load_model
from tests.fixtures import make_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = bw.Workload(batch=4, teacher_len=40, student_len=16, response_len=6, share=4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  return make_model_dir(str(tmp_path_factory.mktemp("bench") / "model"), sharpness=4.0)


def test_shared_prefix_batches_give_the_same_loss_as_full_sequences(model_dir):
  base = load_model(model_dir)
  mesh = sharding.make_mesh()
  args = dict(num_examples=8, vocab=base.spec.vocab_size, bos=2)
  shared = bw.make_batches(SMALL, shared_prefix=True, **args)
  full = bw.make_batches(SMALL, shared_prefix=False, **args)
  assert len(shared) == len(full) == 2 and len(shared[0]["prefix_tokens"]) == 1
  np.testing.assert_array_equal(
      np.concatenate([shared[0]["prefix_tokens"][[0, 0, 0, 0]], shared[0]["teacher_tokens"]], 1),
      full[0]["teacher_tokens"])
  losses = [bw.RdStep(base, SMALL, mesh).run(b[0]) for b in (shared, full)]
  assert losses[0] > 0
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_model_flops_count_the_shared_context_once(model_dir):
  spec = load_model(model_dir).spec
  full = bw.model_flops(spec, bw.Workload())
  shared = bw.model_flops(spec, bw.Workload(share=8), shared_prefix=True)
  cached = bw.model_flops(spec, bw.Workload(), cached=True)
  assert cached < shared < full


def test_workload_overrides_are_typed_and_checked_by_name():
  w = bw.workload("long", ["batch=2", "targets=q+v", "remat=full", "temperature=2"])
  assert (w.batch, w.targets, w.remat, w.temperature, w.teacher_len) == (2, ("q", "v"), "full",
                                                                          2.0, 2048)
  with pytest.raises(ValueError, match="field=value"):
    bw.workload("w1", ["batches=2"])


@pytest.mark.parametrize("name,params", [("llama3-1b", 1_235_814_400),  # Llama 3.2 1B
                                         ("gemma3-1b", 999_885_952)])  # Gemma 3 1B
def test_random_models_have_the_published_sizes(name, params):
  from flax import nnx
  from rd.models import Decoder, from_hf_config
  shapes = nnx.eval_shape(lambda: Decoder(from_hf_config(bw.RANDOM_MODELS[name]),
                                          rngs=nnx.Rngs(0)))
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)) == params


def test_a_random_bf16_model_runs_the_step(monkeypatch):
  monkeypatch.setitem(bw.RANDOM_MODELS, "tiny", tiny.CONFIGS["gemma3"])
  mesh = sharding.make_mesh()
  base = bw.random_model("tiny", "bfloat16", mesh)
  assert base.embed[...].dtype == jax.numpy.bfloat16
  w = bw.workload("w1", ["batch=2", "teacher_len=24", "student_len=12", "response_len=4",
                         "remat=full"])
  batch = bw.make_batches(w, 2, base.spec.vocab_size, 2, shared_prefix=False)[0]
  assert np.isfinite(bw.RdStep(base, w, mesh).run(batch))
  with pytest.raises(ValueError, match="unknown"):
    bw.random_model("nope", "float32", mesh)


def test_sliding_layers_count_attention_over_their_window_only():
  spec = from_hf_config(tiny.CONFIGS["gemma3"])  # window 6; layers: sliding, global, sliding
  per_key = 4 * spec.num_heads * spec.head_dim
  assert spec.flops_per_token(100) - spec.flops_per_token(0) == per_key * (6 + 100 + 6)
  assert spec.flops_per_token(4) - spec.flops_per_token(0) == per_key * 12


def test_generation_feeds_every_token_but_the_last_and_runs_the_head_once_per_new_token():
  spec = from_hf_config(tiny.CONFIGS["gemma3"])
  head = 2 * spec.hidden_size * spec.vocab_size
  layers = spec.flops_per_token(0) - head  # the layers' matmuls, no attention
  per_key = 4 * spec.num_heads * spec.head_dim
  # 3 prompt tokens and 2 new ones: 4 fed tokens, seeing 1, 2, 3, 4 keys on every layer (all
  # within the window of 6), and 2 LM-head calls.
  keys = spec.num_layers * (1 + 2 + 3 + 4)
  assert spec.generation_flops(3, 2) == 4 * layers + per_key * keys + 2 * head
  assert spec.generation_flops(3, 1) == 3 * layers + per_key * spec.num_layers * 6 + head


@pytest.mark.parametrize("workload,extra", [
    pytest.param("w2", ["--vs_torch", "--runs=1"], marks=pytest.mark.slow),  # 45 s, torch too
    ("w3", ["--examples=8", "--epochs=2"]),
    ("w1", ["--runs=1", "--dtype=bfloat16", "--memory", "--override=batch=2,teacher_len=24,"
            "student_len=12,response_len=4"])])
def test_the_job_prints_its_table(model_dir, workload, extra):
  proc = subprocess.run([sys.executable, "-m", "launch.bench", f"--workload={workload}",
                         f"--model={model_dir}", *extra], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("JSON ")][-1][5:])
  assert result["workload"] == workload
  assert "rd (jax)" in result["sides"] and "rd (jax)" in proc.stdout
  if workload == "w2":
    assert "pytorch peer" in result["sides"]
    assert "MFU %" in proc.stdout
  elif workload == "w1":
    assert "bfloat16, batch 2, teacher 24" in proc.stdout
    assert result["sides"]["rd (jax)"]["peak_bytes"] > 0
  else:
    assert len(result["sides"]["rd (jax)"]["epoch_s"]) == 2
