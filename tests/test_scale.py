"""Sharding and scale: the same 3 distillation steps give the same per-step losses, gradient
norms, eval losses and trained LoRA (within 1e-5) on 1 device, on 8 fake CPU devices under
several data x fsdp x tensor meshes, and as 2 JAX processes on 127.0.0.1 (gloo collectives;
1 device each, or with -m slow also 4 devices each on a 2x2x2 mesh).

XLA_FLAGS must be set before JAX starts, so every run is a subprocess: the 1-device reference
through `python -m launch.run`, the 8-device meshes through `tests/scale_driver.py` (all
splits in one process), the 2-process job through `launch/local_multiprocess.py`. The
reference is shared by the module's tests.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh
from safetensors.numpy import load_file

from launch import local_multiprocess
from rd import sharding
from rd.weights.load import load_model
from tests.fixtures import make_model_dir, make_task

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
GLOBAL_BATCH = 8
TOL = 1e-5
SPLITS = ("8x1x1", "2x2x2", "1x4x2")  # data x fsdp x tensor on 8 devices


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("scale")
  return make_model_dir(str(root / "model")), make_task(str(root / "task.jsonl"), 32)


def job_args(inputs, workdir, *extra) -> list[str]:
  """launch.run flags. lr is 0 at step 0 (warm-up 1), then 1e-3: Adam moves each LoRA
  weight by up to about lr per step, far more than the tolerance."""
  model, task = inputs
  return ["--config=configs/distill.py:tiny", f"--workdir={workdir}",
          f"--config.model.path={model}", f"--config.data.train={task}",
          f"--config.data.global_batch={GLOBAL_BATCH}", f"--config.train.steps={STEPS}",
          "--config.train.log_every=1", "--config.optim.lr=1e-3", "--config.optim.warmup_steps=1",
          *extra]


def run_python(args: list[str], devices: int, timeout: float = 600) -> None:
  env = local_multiprocess.process_env(devices)
  proc = subprocess.run([sys.executable, *args], env=env, cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=timeout)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]


def read_run(workdir) -> dict[str, np.ndarray]:
  """Per-step train metrics, eval losses before/after, and the LoRA tensors of a finished run."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  train = [r for r in records if "train/loss" in r]
  assert [r["step"] for r in train] == list(range(1, STEPS + 1))
  out = {name: np.array([r[f"train/{name}"] for r in train]) for name in ("loss", "grad_norm")}
  out["eval"] = np.array([r["eval/kl"] for r in records if "eval/kl" in r])
  lora = load_file(os.path.join(workdir, "lora", "adapter.safetensors"))
  out.update({f"lora/{name}": value for name, value in lora.items()})
  return out


def max_diffs(run, reference) -> dict[str, float]:
  assert run.keys() == reference.keys()
  return {k: float(np.max(np.abs(run[k] - reference[k]))) for k in reference}


def assert_same(run, reference):
  diffs = max_diffs(run, reference)
  print("max |difference| to 1 device:", json.dumps(diffs))
  bad = {k: d for k, d in diffs.items() if not d <= TOL}
  assert not bad, f"differs from the 1-device run by more than {TOL}: {bad}"


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one_device") / "run"
  run_python(["-m", "launch.run", *job_args(inputs, workdir)], devices=1)
  ref = read_run(workdir)
  # Not vacuous: training moved the LoRA's B (zero at init) by far more than the tolerance.
  assert min(np.abs(v).max() for k, v in ref.items() if k.endswith(".b")) > 10 * TOL
  return ref


@pytest.fixture(scope="module")
def eight_devices(inputs, tmp_path_factory):
  root = tmp_path_factory.mktemp("eight_devices")
  run_python(["-m", "tests.scale_driver", f"--meshes={','.join(SPLITS)}",
              *job_args(inputs, root)], devices=8)
  return root


def test_tiny_model_is_split_by_the_meshes(inputs):
  """The tiny model's dimensions divide the meshes, so fsdp and tensor really split weights."""
  params = []  # (path, shape) as train's param_sharding_fn sees them

  def record(path, shape):
    params.append((path, shape))
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])

  load_model(inputs[0], sharding=record)
  for split in SPLITS:
    shape = tuple(int(s) for s in split.split("x"))
    mesh = AbstractMesh(shape, sharding.MESH_AXES)
    used = {a for path, dims in params
            for a in sharding.spec_for(dims, sharding.logical_axes(path), mesh) if a}
    assert used == {a for a, n in zip(sharding.MESH_AXES, shape) if n > 1 and a != "data"}, split


@pytest.mark.parametrize("split", SPLITS)
def test_eight_devices_match_one(reference, eight_devices, split):
  assert_same(read_run(eight_devices / split), reference)


@pytest.mark.parametrize("devices_per_process,split", [
    (1, "2x1x1"),
    # fsdp and tensor across the two processes too; slow only to keep the default suite lean.
    pytest.param(4, "2x2x2", marks=pytest.mark.slow),
])
def test_two_processes_match_one(reference, inputs, tmp_path, devices_per_process, split):
  data, fsdp, tensor = split.split("x")
  args = job_args(inputs, tmp_path / "run", f"--config.mesh.data={data}",
                  f"--config.mesh.fsdp={fsdp}", f"--config.mesh.tensor={tensor}")
  out = io.StringIO()
  code = local_multiprocess.run(args, num_processes=2, devices_per_process=devices_per_process,
                                timeout=600, out=out)
  log = out.getvalue()
  assert code == 0, log[-5000:]
  assert "[p0] " in log and "[p1] " in log
  assert_same(read_run(tmp_path / "run"), reference)


def test_two_processes_with_the_teacher_cache_match_one_without(reference, inputs, tmp_path):
  """Each process caches its share of the teacher pass and all-gathers the rest: the run is
  the uncached one-device run (every process meets other examples in every epoch)."""
  args = job_args(inputs, tmp_path / "run", "--config.teacher.cache=true")
  out = io.StringIO()
  code = local_multiprocess.run(args, num_processes=2, devices_per_process=1, timeout=600,
                                out=out)
  assert code == 0, out.getvalue()[-5000:]
  assert_same(read_run(tmp_path / "run"), reference)


def test_multiprocess_launcher_fails_when_a_process_fails(inputs, tmp_path):
  out = io.StringIO()
  args = job_args(inputs, tmp_path / "run", f"--config.data.train={tmp_path / 'missing.jsonl'}")
  code = local_multiprocess.run(args, num_processes=2, timeout=300, out=out)
  assert code != 0
  log = out.getvalue()
  assert "[p0] error: config.data.train" in log and "[p1] error: config.data.train" in log, log


def test_process_env_sets_the_device_count():
  env = local_multiprocess.process_env(
      4, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_dump_to=/x"})
  assert env["XLA_FLAGS"].split() == ["--xla_dump_to=/x",
                                      "--xla_force_host_platform_device_count=4"]
  assert env["JAX_PLATFORMS"] == "cpu" and str(REPO_ROOT) in env["PYTHONPATH"].split(os.pathsep)
