"""rd.checkpoint: bitwise round trips of state + data iterator, retention, resume, base-model
checks, and end-to-end SIGTERM (save and exit 0) / SIGKILL (resume from the last complete
checkpoint) in subprocesses."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rd.checkpoint import (BaseModelMismatchError, Checkpointer, PreemptionGuard, abstract_state,
                           base_model_fingerprint)

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_iterator():
  return iter(grain.MapDataset.range(100).shuffle(seed=0).batch(4).to_iter_dataset())


def make_state(seed=0):
  """A LoRA-like nested dict, adamw state after one update, int step, typed PRNG key."""
  rng = np.random.default_rng(seed)
  params = {"lora": {t: {"a": jnp.asarray(rng.normal(size=(2, 8, 4)), jnp.float32),
                         "b": jnp.asarray(rng.normal(size=(2, 4, 8)), jnp.bfloat16)}
                     for t in ("q", "v")}}
  params, opt_state = _adamw_step(params)
  return {"params": params, "opt_state": opt_state, "step": 3,
          "key": jax.random.key(seed + 42)}


@jax.jit  # one compilation instead of one per eager op
def _adamw_step(params):
  opt = optax.adamw(1e-2)
  opt_state = opt.init(params)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.5, params)
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def zeros_like_state():
  state = {k: v for k, v in make_state(seed=1).items() if k != "key"}
  state = jax.tree.map(lambda x: jnp.asarray(np.zeros_like(x)), state)
  return {**state, "key": jax.random.key(7), "step": 0}


def assert_bitwise_equal(a, b):
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb
  for x, y in zip(la, lb):
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      assert isinstance(y, jax.Array) and y.dtype == x.dtype  # still a typed key, same impl
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()


@pytest.fixture
def base_file(tmp_path):
  path = tmp_path / "base.gguf"
  path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
  return path


def test_roundtrip_state_and_iterator_bitwise(tmp_path, base_file):
  workdir = tmp_path / "run"
  state = make_state()
  it = make_iterator()
  for _ in range(3):
    next(it)
  ckpt = Checkpointer(workdir, every_steps=5, base_model=base_file,
                      config={"optim": {"lr": 3e-4}, "model": "x", "targets": ("q", "v")},
                      metadata={"note": "hi"})
  assert ckpt.save(3, state, it, force=True)  # async: returns before the write finishes
  expected_next = next(it)  # advancing after save must not change the saved iterator state
  ckpt.close()

  # A fresh "process": new Checkpointer on the same workdir, fresh iterator, other values.
  it2 = make_iterator()
  ckpt2 = Checkpointer(workdir, every_steps=5, base_model=base_file)
  restored, step = ckpt2.restore_or_init(zeros_like_state(), it2)
  assert step == 3
  assert_bitwise_equal(restored, state)
  assert restored["step"] == 3 and isinstance(restored["step"], int)
  np.testing.assert_array_equal(next(it2), expected_next)

  meta = ckpt2.read_meta()
  assert meta["step"] == 3
  assert meta["base_model"]["path"] == str(base_file.resolve())
  assert meta["base_model"]["hash"] == base_model_fingerprint(base_file)
  assert meta["config"] == {"optim": {"lr": 3e-4}, "model": "x", "targets": ["q", "v"]}
  assert meta["metadata"] == {"note": "hi"} and meta["rd_version"]

  # Abstract targets and init functions restore the same thing.
  restored_abs, _ = ckpt2.restore_or_init(abstract_state(state))
  assert_bitwise_equal(restored_abs, state)
  # An init function is only traced (jax.eval_shape) when there is a checkpoint.
  restored_fn, _ = ckpt2.restore_or_init(lambda: make_state(seed=1))
  # Through eval_shape, the Python int step becomes a 0-d array; all leaves are jax arrays.
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(restored_fn))
  assert int(restored_fn["step"]) == 3
  assert_bitwise_equal({**restored_fn, "step": 3}, state)
  ckpt2.close()
  # The base model's weights are not in the checkpoint.
  assert not any(p.name == base_file.name for p in workdir.rglob("*"))


def test_relative_workdir(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # Orbax itself needs absolute paths; Checkpointer resolves them
  with Checkpointer("run", every_steps=1) as ckpt:
    assert ckpt.save(1, {"w": jnp.ones(2)})
  with Checkpointer("run") as ckpt:
    assert ckpt.restore_or_init({"w": jnp.zeros(2)})[1] == 1


def test_no_checkpoint_initializes(tmp_path):
  ckpt = Checkpointer(tmp_path / "run")
  init = {"w": jnp.ones(3)}
  state, step = ckpt.restore_or_init(init, make_iterator())
  assert step is None and state is init
  calls = []
  state, step = ckpt.restore_or_init(lambda: calls.append(1) or init)
  assert step is None and calls == [1]
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    ckpt.restore_or_init(abstract_state(init))
  ckpt.close()


def test_keep_n_and_latest_step_on_resume(tmp_path):
  workdir = tmp_path / "run"
  it = make_iterator()
  ckpt = Checkpointer(workdir, keep=2, every_steps=2)
  saved = []
  for step in range(1, 10):
    next(it)
    if ckpt.save(step, {"w": jnp.full((3,), step, jnp.float32)}, it):
      saved.append(step)
  assert saved == [2, 4, 6, 8]
  assert not ckpt.save(8, {"w": jnp.zeros(3)}, it, force=True)  # exists: no-op
  ckpt.close()
  dirs = sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.is_dir())
  assert dirs == ["6", "8"]

  it2 = make_iterator()
  ckpt2 = Checkpointer(workdir, keep=2, every_steps=2)
  assert ckpt2.all_steps() == [6, 8]
  state, step = ckpt2.restore_or_init({"w": jnp.zeros(3)}, it2)
  assert step == 8
  np.testing.assert_array_equal(state["w"], np.full((3,), 8, np.float32))
  reference = make_iterator()
  for _ in range(8):
    next(reference)
  np.testing.assert_array_equal(next(it2), next(reference))  # batch 9 comes next
  assert ckpt2.save(9, state, it2, force=True)  # forced off-interval save, then keep=2
  ckpt2.close()
  assert Checkpointer(workdir, keep=2).all_steps() == [8, 9]


def test_base_model_mismatch_names_both_paths(tmp_path, base_file):
  other = tmp_path / "other.gguf"
  other.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 64)
  workdir = tmp_path / "run"
  with Checkpointer(workdir, base_model=base_file) as ckpt:
    ckpt.save(1, {"w": jnp.ones(2)}, force=True)

  ckpt = Checkpointer(workdir, base_model=other)
  with pytest.raises(BaseModelMismatchError) as err:
    ckpt.restore_or_init({"w": jnp.zeros(2)})
  assert str(base_file.resolve()) in str(err.value)
  assert str(other.resolve()) in str(err.value)
  state, step = ckpt.restore_or_init({"w": jnp.zeros(2)}, allow_base_change=True)
  assert step == 1
  ckpt.close()

  moved = tmp_path / "moved" / "base.gguf"  # the same weights elsewhere: fine
  moved.parent.mkdir()
  moved.write_bytes(base_file.read_bytes())
  with Checkpointer(workdir, base_model=moved) as ckpt:
    assert ckpt.restore_or_init({"w": jnp.zeros(2)})[1] == 1


def test_fingerprint_samples_content_not_mtime(tmp_path):
  path = tmp_path / "big.bin"
  data = bytearray(np.random.default_rng(0).integers(0, 256, 5 << 20, np.uint8).tobytes())
  path.write_bytes(data)
  fp = base_model_fingerprint(path)
  os.utime(path, (1, 1))
  assert base_model_fingerprint(path) == fp  # mtime ignored
  for offset in (10, len(data) // 2, len(data) - 10):  # first / middle / last MiB
    changed = bytearray(data)
    changed[offset] ^= 1
    path.write_bytes(changed)
    assert base_model_fingerprint(path) != fp
  path.write_bytes(data + b"x")  # size
  assert base_model_fingerprint(path) != fp
  d = tmp_path / "hf"
  d.mkdir()
  (d / "config.json").write_text("{}")
  (d / "model.safetensors").write_bytes(b"abc")
  fp_dir = base_model_fingerprint(d)
  (d / ".cache").mkdir()
  (d / ".cache" / "x").write_text("ignored")
  assert base_model_fingerprint(d) == fp_dir
  (d / "config.json").write_text('{"a": 1}')
  assert base_model_fingerprint(d) != fp_dir


def test_guard_handler_only_sets_flag():
  before = signal.getsignal(signal.SIGTERM)
  with PreemptionGuard() as guard:
    assert not guard.check(1) and not guard.should_stop
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)  # Python runs the handler at the next bytecode boundary
    assert guard.should_stop and guard.check(2) and guard.signal_received == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == before


# ---------------------------------------------------------------------------------------------
# End to end in subprocesses.

TRAIN_SCRIPT = textwrap.dedent("""
    import os, sys, time
    workdir, (max_steps, every, suicide_at) = sys.argv[1], map(int, sys.argv[2:5])
    import grain, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from rd.checkpoint import Checkpointer, PreemptionGuard

    guard = PreemptionGuard()
    mesh = Mesh(np.array(jax.devices()[:2]), ("x",))
    sharding, replicated = NamedSharding(mesh, P("x")), NamedSharding(mesh, P())
    def init():
      return {"w": jax.device_put(jnp.zeros((2, 1 << 19), jnp.float32), sharding),  # 4 MiB
              **jax.device_put({"step": jnp.int32(0), "key": jax.random.key(0)}, replicated)}
    it = iter(grain.MapDataset.range(10_000).shuffle(seed=1).batch(2).to_iter_dataset())
    ckpt = Checkpointer(workdir, every_steps=every, keep=3)
    state, restored = ckpt.restore_or_init(init(), it)
    assert state["w"].sharding == sharding, state["w"].sharding
    assert state["key"].sharding == replicated, state["key"].sharding
    step = 0 if restored is None else restored
    assert int(state["step"]) == step
    print("start", step, flush=True)

    @jax.jit
    def train_step(state, batch):
      key, sub = jax.random.split(state["key"])
      return {"w": state["w"] + batch.sum().astype(jnp.float32), "step": state["step"] + 1,
              "key": key}

    while step < max_steps:
      state = train_step(state, next(it))
      step += 1
      if guard.check(step):
        ckpt.save(step, state, it, force=True)
        ckpt.close()
        print("preempted", step, flush=True)
        sys.exit(0)
      if ckpt.save(step, state, it):
        print("saving", step, flush=True)
      print("step", step, flush=True)
      if step == suicide_at:  # die while the async write of this step may still be running
        os.kill(os.getpid(), 9)
      time.sleep(0.01)
    ckpt.save(step, state, it, force=True)
    ckpt.close()
    print("done", step, float(state["w"][0, 0]), float(state["w"][1, -1]), flush=True)
""")


def expected_w(steps):
  it = iter(grain.MapDataset.range(10_000).shuffle(seed=1).batch(2).to_iter_dataset())
  return float(sum(int(next(it).sum()) for _ in range(steps)))


def child_env():
  pythonpath = [str(REPO_ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH")
                                   else [])
  return dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath), JAX_PLATFORMS="cpu",
              XLA_FLAGS="--xla_force_host_platform_device_count=2")


def spawn(tmp_path, name, source, *args):
  """Run `source` as a script; stdout is piped, stderr goes to a file (no pipe deadlock)."""
  script = tmp_path / f"{name}.py"
  script.write_text(source)
  stderr = open(tmp_path / f"{name}.{len(list(tmp_path.glob(name + '.*.err')))}.err", "w+")
  proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                          stderr=stderr, text=True, env=child_env(), cwd=tmp_path)
  proc.stderr_file = stderr
  watchdog = threading.Timer(90, proc.kill)  # never hang the test run
  watchdog.daemon = True
  watchdog.start()
  proc.watchdog = watchdog
  return proc


def start(tmp_path, workdir, max_steps, every, suicide_at=-1):
  return spawn(tmp_path, "train", TRAIN_SCRIPT, workdir, max_steps, every, suicide_at)


def read_until(proc, prefix):
  lines = []
  for line in proc.stdout:
    lines.append(line.strip())
    if line.startswith(prefix):
      break
  return lines


def finish(proc):
  """(stdout, stderr) after the process exits."""
  out = proc.stdout.read()
  proc.wait()
  proc.watchdog.cancel()
  proc.stdout.close()
  with proc.stderr_file as f:
    f.seek(0)
    return out, f.read()


def test_sigterm_saves_and_exits_zero(tmp_path):
  workdir = tmp_path / "run"
  proc = start(tmp_path, workdir, max_steps=100_000, every=1000)
  lines = read_until(proc, "step 4")
  proc.send_signal(signal.SIGTERM)
  out, err = finish(proc)
  lines += out.split("\n")
  assert proc.returncode == 0, err[-3000:]
  stopped = [int(l.split()[1]) for l in lines if l.startswith("preempted")]
  assert len(stopped) == 1 and stopped[0] >= 4, lines
  step = stopped[0]
  ckpt = Checkpointer(workdir)
  assert ckpt.all_steps() == [step]  # every=1000: only the preemption save
  it = iter(grain.MapDataset.range(10_000).shuffle(seed=1).batch(2).to_iter_dataset())
  state, restored = ckpt.restore_or_init(
      {"w": jnp.zeros((2, 1 << 19)), "step": jnp.int32(0), "key": jax.random.key(0)}, it)
  assert restored == step and int(state["step"]) == step
  assert float(state["w"][0, 0]) == expected_w(step)
  reference = iter(grain.MapDataset.range(10_000).shuffle(seed=1).batch(2).to_iter_dataset())
  for _ in range(step):
    next(reference)
  np.testing.assert_array_equal(next(it), next(reference))
  ckpt.close()


def test_sigkill_resumes_from_last_complete_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  proc = start(tmp_path, workdir, max_steps=100, every=2, suicide_at=8)
  out, err = finish(proc)
  assert proc.returncode == -signal.SIGKILL, err[-3000:]
  assert "saving 8" in out and "step 8" in out and "done" not in out
  root = workdir / "checkpoints"
  complete = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())
  partial = [p.name for p in root.iterdir() if not p.name.isdigit()]
  assert complete and set(complete) <= {2, 4, 6, 8}, (complete, partial)
  assert all(".orbax-checkpoint-tmp" in name for name in partial), partial
  last = max(complete)

  proc = start(tmp_path, workdir, max_steps=12, every=2)
  out, err = finish(proc)
  assert proc.returncode == 0, err[-3000:]
  lines = out.split("\n")
  assert lines[0] == f"start {last}", (lines[0], complete, partial)
  done = [l.split() for l in lines if l.startswith("done")][0]
  # The resumed run ends exactly where an uninterrupted one would (state + data order).
  assert int(done[1]) == 12 and float(done[2]) == float(done[3]) == expected_w(12)
  assert not any(".orbax-checkpoint-tmp" in p.name for p in root.iterdir())  # cleaned up
  assert Checkpointer(workdir, keep=3).all_steps() == [8, 10, 12]


MULTIPROCESS_SCRIPT = textwrap.dedent("""
    import sys, time
    pid, workdir, port = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    import grain, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from rd.checkpoint import Checkpointer, PreemptionGuard

    guard = PreemptionGuard()  # after initialize: JAX's preemption sync service owns SIGTERM
    mesh = Mesh(np.array(jax.devices()), ("x",))  # 2 processes x 2 CPU devices
    w = jax.make_array_from_callback((4, 8), NamedSharding(mesh, P("x")),
                                     lambda idx: np.zeros((4, 8), np.float32)[idx])
    it = iter(grain.MapDataset.range(1000)[pid::2].batch(2).to_iter_dataset())
    ckpt = Checkpointer(workdir, every_steps=1000)
    state, restored = ckpt.restore_or_init({"w": w}, it)
    step = restored or 0
    train_step = jax.jit(lambda state, x: {"w": state["w"] + x})
    print("start", step, flush=True)
    while True:
      local = np.float32(next(it).sum()).reshape(())
      x = jax.make_array_from_process_local_data(NamedSharding(mesh, P()), local, ())
      state = train_step(state, x)
      step += 1
      print("step", step, flush=True)
      if guard.check(step):  # both processes agree on the step
        ckpt.save(step, state, it, force=True)
        ckpt.close()
        print("preempted", step, flush=True)
        sys.exit(0)
      ckpt.save(step, state, it)
      time.sleep(0.02)
""")


@pytest.mark.skipif(not os.environ.get("RD_TEST_MULTIPROCESS"),
                    reason="two jax.distributed CPU processes (~5-10 s); "
                           "set RD_TEST_MULTIPROCESS=1")
def test_multiprocess_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  """JAX's preemption sync service: SIGTERM to process 1 only; both save the same step."""
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  workdir = tmp_path / "run"
  procs = [spawn(tmp_path, f"mp{i}", MULTIPROCESS_SCRIPT, i, workdir, port) for i in range(2)]
  lines = read_until(procs[1], "step 3")
  procs[1].send_signal(signal.SIGTERM)
  outs = [finish(p) for p in procs]
  stops = []
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    stops.append([int(l.split()[1]) for l in out.split("\n") if l.startswith("preempted")])
  assert stops[0] == stops[1] and len(stops[0]) == 1, (stops, lines)
  step = stops[0][0]
  step_dir = workdir / "checkpoints" / str(step)
  assert sorted(p.name for p in (step_dir / "data").glob("process_*")) == [
      "process_0-of-2.json", "process_1-of-2.json"]
  assert [p.name for p in (workdir / "checkpoints").iterdir()] == [str(step)]
