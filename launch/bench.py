r"""Benchmarks that print a table. Medians over several runs; peers alternate with rd in one run.

  python -m launch.bench --workload=w1 --vs_torch          # distillation step beside PyTorch
  python -m launch.bench --workload=w1 --vs_torch --memory # + peak memory, each side alone
  python -m launch.bench --workload=w2 --vs_torch          # 8 examples share each context
  python -m launch.bench --workload=w3 --vs_torch          # epochs over the same examples
  python -m launch.bench --workload=w1 --fake_devices=8 --mesh=4,1,2  # sharded over 8 CPUs
  python -m launch.bench --workload=sample --vs_torch      # sampling beside transformers
  python -m launch.bench --workload=long --model=random:llama3-1b --dtype=bfloat16  # a GPU/TPU

Distillation workloads (launch/bench_workloads.py), Gemma 3 270M fp32, LoRA rank 16 on q, k,
v, o, forward KL at T = 1 over the full vocabulary, AdamW:
  w1: batch 4, teacher 256 tokens, student 64, 32 response tokens.
  w2: w1 where every 8 examples share one context; rd runs each context once per batch.
  w3: w1 for --epochs over --examples; rd caches the teacher's rows in epoch 1 (teacher.cache).
  long: batch 8, teacher 2048 tokens, student 512, 128 response tokens: the accelerator's
        workload, on a 1B-class model with random weights (`--model=random:llama3-1b` or
        `random:gemma3-1b`, bench_workloads.RANDOM_MODELS) in bf16.
`--override=batch=16,remat=full` changes any workload field. The PyTorch peer
(launch/bench_torch.py: transformers + PEFT, `logits_to_keep`) runs the same step, teacher
included, every time.

Columns: examples/s; tokens/s (teacher + student tokens); MFU = model FLOPs (bench_workloads.
model_flops) per second over the matmul peak measured on the spot in the weights' dtype (2048^3
on the CPU, 8192^3 on an accelerator); compile (rd) or first call (torch) seconds; peak memory.

On the CPU, `--vs_torch` runs each side in a process of its own (`--serve`), the job alternating
their steps: in one process, each framework's idle thread pool and the memory the other just
freed slowed the next side's step (rd's W1 step took 3.96 s after the peer's against 3.18 s
alone). Each process reports its peak resident memory (VmHWM) over the warm-up and timed
steps, model weights included (the peer's process never loads rd's). rd keeps freed memory in
its process (rd/xla_cpu.py); the peer keeps glibc's defaults, as a PyTorch user's loop does,
unless `--peer_rd_malloc`. `--memory` with one side reports that process's peak; on a GPU,
each side's peak device memory as its framework counts it.

Workload `sample`: batch 8, 64-token prompts, 32 new tokens, greedy, no early stop.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("workload", "w1", ["w1", "w2", "w3", "long", "sample"], "What to measure.")
flags.DEFINE_string("model", "gemma3-270m", "HF directory, .gguf file, 'gemma3-270m', or "
                    "random:NAME (a 1B-class shape with random weights; bench_workloads."
                    "RANDOM_MODELS).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "The base model's weights.")
flags.DEFINE_list("override", [], "Workload fields to change, e.g. batch=16,remat=full.")
flags.DEFINE_integer("runs", 5, "Timed runs per implementation (after one warm-up).")
flags.DEFINE_bool("vs_torch", False, "Also time the PyTorch + transformers (+ PEFT) peer.")
flags.DEFINE_enum("impl", "both", ["both", "rd", "torch"], "Which side(s) to run.")
flags.DEFINE_bool("memory", False, "Report peak memory (always, when each side runs in its own "
                  "process).")
flags.DEFINE_bool("serve", False, "Internal: run one side's step in this process, driven over "
                  "stdin by the job that alternates the sides.")
flags.DEFINE_bool("peer_rd_malloc", False, "Give the PyTorch peer's process rd's malloc "
                  "settings too (rd/xla_cpu.py); by default it keeps glibc's, as a PyTorch "
                  "user's loop does.")
flags.DEFINE_integer("fake_devices", 0, "Split the CPU into this many XLA devices.")
flags.DEFINE_list("mesh", ["-1", "1", "1"], "data,fsdp,tensor sizes of rd's mesh.")
flags.DEFINE_integer("examples", 16, "w3: examples per epoch.")
flags.DEFINE_integer("epochs", 3, "w3: epochs.")
flags.DEFINE_integer("batch", 8, "sample: sequences per batch.")
flags.DEFINE_integer("prompt_len", 64, "sample: prompt tokens per sequence.")
flags.DEFINE_integer("new_tokens", 32, "sample: generated tokens per sequence.")

RD, TORCH = "rd (jax)", "pytorch peer"


def alternate(fns: dict, runs: int):
  """Warms each up, then interleaves timed runs so machine noise hits every side alike."""
  warm = {}
  for name, fn in fns.items():
    start = time.perf_counter()
    fn()
    warm[name] = time.perf_counter() - start
  times = {name: [] for name in fns}
  for _ in range(runs):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return warm, times


def matmul_peak_flops(dtype: str = "float32", runs: int = 10) -> float:
  """Best FLOP/s of an n x n x n jitted matmul in `dtype` on the default device (n = 2048 on
  the CPU, 8192 on an accelerator); random operands, as real weights are."""
  import jax  # pylint: disable=import-outside-toplevel
  n = 2048 if jax.default_backend() == "cpu" else 8192
  x = jax.random.normal(jax.random.key(0), (n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  best = min(_timed(lambda: f(x).block_until_ready()) for _ in range(runs))
  return 2 * n**3 / best


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _peak_rss_reset() -> None:
  """Resets this process's resident-memory high-water mark (Linux)."""
  with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
    f.write("5")


def _peak_rss_bytes() -> int:
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no VmHWM in /proc/self/status")


def _sides() -> list[str]:
  if FLAGS.impl != "both":
    return [FLAGS.impl]
  return ["rd", "torch"] if FLAGS.vs_torch else ["rd"]


def _load(path_flag: str, mesh=None):
  """The base model (placed with rd's parameter shardings over `mesh`) and its local path
  (None for random weights)."""
  from launch import bench_workloads as bw  # pylint: disable=import-outside-toplevel
  from rd import sharding  # pylint: disable=import-outside-toplevel
  from rd.embedded import resolve_model_path  # pylint: disable=import-outside-toplevel
  from rd.weights.load import load_model  # pylint: disable=import-outside-toplevel
  if path_flag.startswith("random:"):
    base = bw.random_model(path_flag.removeprefix("random:"), FLAGS.dtype, mesh or _mesh())
    if "torch" not in _sides():
      return base, None
    from rd.weights.export import save_hf  # pylint: disable=import-outside-toplevel
    path = os.path.join(tempfile.mkdtemp(prefix="rd-bench-"), "model")  # the peer reads it
    save_hf(base, path)
    return base, path
  placement = sharding.param_sharding_fn(mesh) if mesh is not None else None
  return (load_model(path_flag, dtype=FLAGS.dtype, sharding=placement),
          str(resolve_model_path(path_flag)))


def _torch_model(path: str):
  """The PyTorch peer's model: on the GPU when JAX has one, in the weights' dtype."""
  import jax  # pylint: disable=import-outside-toplevel
  from launch import bench_torch  # pylint: disable=import-outside-toplevel
  device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  return bench_torch.load_model(path, FLAGS.dtype, device)


def _mesh():
  from rd import sharding  # pylint: disable=import-outside-toplevel
  return sharding.make_mesh(*(int(s) for s in FLAGS.mesh))


def _model(sides: list[str], mesh):
  """(spec, rd's base model or None, the peer's model path or None). rd's weights are loaded
  only in a process that runs rd, so the peer's memory never counts them."""
  if "rd" in sides or FLAGS.model.startswith("random:"):
    base, path = _load(FLAGS.model, mesh)
    return base.spec, base, path
  from rd.embedded import resolve_model_path  # pylint: disable=import-outside-toplevel
  from rd.weights.load import open_checkpoint  # pylint: disable=import-outside-toplevel
  return open_checkpoint(FLAGS.model)[0], None, str(resolve_model_path(FLAGS.model))


def _step_fns(workload: str, spec, base, path: str, sides: list[str], mesh):
  """{side: one-step fn}, with each side's batch, the workload and the model FLOPs of rd's step."""
  from launch import bench_torch, bench_workloads as bw  # pylint: disable=import-outside-toplevel
  w = bw.workload(workload, FLAGS.override)
  shared = w.share > 1
  fns = {}
  if "rd" in sides:
    rd_batch = bw.make_batches(w, w.batch, spec.vocab_size, spec.bos_token_id or 2,
                               shared_prefix=shared)[0]
    rd_step = bw.RdStep(base, w, mesh)
    fns[RD] = lambda: rd_step.run(rd_batch)
  if "torch" in sides:
    torch_batch = bw.make_batches(w, w.batch, spec.vocab_size, spec.bos_token_id or 2,
                                  shared_prefix=False)[0]
    fns[TORCH] = bench_torch.distill_step_fn(_torch_model(path), torch_batch,
                                             rank=w.rank, alpha=2.0 * w.rank,
                                             targets=w.targets, lr=w.lr,
                                             temperature=w.temperature)
  return fns, w, bw.model_flops(spec, w, shared_prefix=shared)


def _serve(workload: str, mesh) -> None:
  """One side's step in this process: READY (warm-up seconds), then a TIME line per "run" read
  from stdin, and PEAK (resident bytes over the warm-up and runs, weights included) at the end."""
  spec, base, path = _model(_sides(), mesh)
  (fn,) = _step_fns(workload, spec, base, path, _sides(), mesh)[0].values()
  _peak_rss_reset()
  print(f"READY {_timed(fn)}", flush=True)
  for line in sys.stdin:
    if line.strip() != "run":
      break
    print(f"TIME {_timed(fn)}", flush=True)
  print(f"PEAK {_peak_rss_bytes()}", flush=True)


def _reply(worker: subprocess.Popen, key: str) -> float:
  for line in worker.stdout:
    if line.startswith(key + " "):
      return float(line.split()[1])
  raise RuntimeError(f"a bench worker ended (exit {worker.wait()}) before it said {key}; "
                     "its error is printed above")


def alternate_in_workers(workload: str, model: str, runs: int):
  """`alternate`, with each side in a process of its own (`--serve`): its own threads, allocator
  and settings, so neither side's leftovers (idle thread pools, freed memory) slow the other.
  The peer keeps glibc's malloc unless --peer_rd_malloc. Returns warm, times, peak memory."""
  workers = {}
  for side, name in (("rd", RD), ("torch", TORCH)):
    env = dict(os.environ)
    if side == "torch" and not FLAGS.peer_rd_malloc:
      env["RD_SYSTEM_MALLOC"] = "1"
    args = [sys.executable, "-m", "launch.bench", f"--workload={workload}", f"--model={model}",
            f"--dtype={FLAGS.dtype}", f"--override={','.join(FLAGS.override)}",
            f"--mesh={','.join(FLAGS.mesh)}", f"--fake_devices={FLAGS.fake_devices}",
            f"--impl={side}", "--serve"]
    workers[name] = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
  warm = {name: _reply(worker, "READY") for name, worker in workers.items()}
  times = {name: [] for name in workers}
  for _ in range(runs):
    for name, worker in workers.items():
      worker.stdin.write("run\n")
      worker.stdin.flush()
      times[name].append(_reply(worker, "TIME"))
  memory = {}
  for name, worker in workers.items():
    worker.stdin.close()
    memory[name] = int(_reply(worker, "PEAK"))
    worker.wait()
  return warm, times, memory


def bench_step(workload: str):
  """w1 / w2: one distillation step per run."""
  import jax  # pylint: disable=import-outside-toplevel
  from launch import bench_workloads as bw  # pylint: disable=import-outside-toplevel
  from rd.metrics import format_table  # pylint: disable=import-outside-toplevel
  mesh = _mesh()
  if FLAGS.serve:
    return _serve(workload, mesh)
  on_cpu = jax.default_backend() == "cpu"
  peak = matmul_peak_flops(FLAGS.dtype)
  if on_cpu and len(_sides()) > 1:  # each side in its own process
    spec, base, model = _model(["torch"], mesh)  # random weights: saved once for both workers
    del base
    w = bw.workload(workload, FLAGS.override)
    flops = bw.model_flops(spec, w, shared_prefix=w.share > 1)
    warm, times, memory = alternate_in_workers(workload, model, FLAGS.runs)
  else:
    spec, base, path = _model(_sides(), mesh)
    fns, w, flops = _step_fns(workload, spec, base, path, _sides(), mesh)
    if FLAGS.memory and on_cpu:
      _peak_rss_reset()
    warm, times = alternate(fns, FLAGS.runs)
    memory = {}
    if FLAGS.memory and on_cpu:
      memory = {name: _peak_rss_bytes() for name in fns}
    elif FLAGS.memory:  # each framework's own count of device memory
      memory = {RD: max(d.memory_stats().get("peak_bytes_in_use", 0) for d in jax.local_devices())}
      if TORCH in fns:
        import torch  # pylint: disable=import-outside-toplevel
        memory[TORCH] = torch.cuda.max_memory_allocated()
  tokens = w.batch * (w.teacher_len + w.student_len)
  medians = {name: statistics.median(t) for name, t in times.items()}
  rows = []
  for name, t in times.items():
    m = medians[name]
    rows.append([name, f"{w.batch / m:.3f}", f"{tokens / m:.0f}", f"{m:.3f}",
                 f"{min(t):.3f}-{max(t):.3f}", f"{100 * flops / m / peak:.1f}",
                 f"{memory[name] / 2**30:.2f}" if name in memory else "-",
                 f"{warm[name]:.1f}", f"{m / medians[RD]:.2f}x" if RD in medians else "-"])
  print(f"\n{workload}: {FLAGS.model} {FLAGS.dtype}, batch {w.batch}, teacher {w.teacher_len}, "
        f"student {w.student_len}, response {w.response_len}, share {w.share}, remat {w.remat}; "
        f"{FLAGS.runs} runs, medians; {jax.device_count()} {jax.default_backend()} device(s), "
        f"matmul peak {peak / 1e9:.0f} GFLOP/s, model {flops / 1e9:.1f} GFLOP a step")
  print(format_table(rows, ["impl", "examples/s", "tokens/s", "s/step", "range", "MFU %",
                            "peak GiB", "compile s", "time vs rd"]))
  _print_json(workload, {name: {"median_s": medians[name], "examples_per_s": w.batch / medians[name],
                                "peak_bytes": memory.get(name)} for name in medians})


def _print_json(workload: str, sides: dict) -> None:
  print("JSON " + json.dumps({"workload": workload, "sides": sides}))


def bench_epochs():
  """w3: epochs over the same examples; rd builds the teacher cache in the first epoch."""
  import jax  # pylint: disable=import-outside-toplevel
  from launch import bench_torch, bench_workloads as bw  # pylint: disable=import-outside-toplevel
  from rd import teacher_cache  # pylint: disable=import-outside-toplevel
  from rd.metrics import format_table  # pylint: disable=import-outside-toplevel
  w = bw.workload("w3", FLAGS.override)
  mesh = _mesh()
  base, path = _load(FLAGS.model, mesh)
  spec = base.spec
  batches = bw.make_batches(w, FLAGS.examples, spec.vocab_size, spec.bos_token_id or 2,
                            shared_prefix=False)
  rd_step = bw.RdStep(base, w, mesh)
  cache = None

  def rd_epoch():
    nonlocal cache
    if cache is None:  # epoch 1: one teacher pass over the examples, then cached steps
      cache = teacher_cache.build(rd_step.teacher, batches, mesh, num_examples=FLAGS.examples,
                                  response_len=w.response_len)
    for batch in batches:
      rd_step.run(cache.attach(batch))

  sides = {RD: rd_epoch}
  if "torch" in _sides():
    torch_step = bench_torch.distill_step_fn(_torch_model(path), batches[0],
                                             rank=w.rank, alpha=2.0 * w.rank, targets=w.targets,
                                             lr=w.lr, temperature=w.temperature)
    sides[TORCH] = lambda: [torch_step() for _ in batches]  # same shapes every batch
  # Compile outside the timings: the teacher on one batch, one cached step, then a fresh state.
  start = time.perf_counter()
  warm_cache = teacher_cache.build(rd_step.teacher, batches[:1], mesh,
                                   num_examples=FLAGS.examples, response_len=w.response_len)
  rd_step.run(warm_cache.attach(batches[0]))
  rd_step.reset()
  compile_s = time.perf_counter() - start
  if TORCH in sides:
    torch_step()
  times = {name: [] for name in sides}
  for _ in range(FLAGS.epochs):
    for name, fn in sides.items():
      times[name].append(_timed(fn))
  rows = [[name] + [f"{t:.2f}" for t in ts] + [
      f"{max(ts[1:]) / ts[0]:.2f}" if len(ts) > 1 else "-"] for name, ts in times.items()]
  print(f"\nw3: {FLAGS.examples} examples x {FLAGS.epochs} epochs, batch {w.batch}; seconds per "
        f"epoch; {jax.device_count()} device(s); rd compile {compile_s:.1f} s (not timed)")
  print(format_table(rows, ["impl"] + [f"epoch {i + 1}" for i in range(FLAGS.epochs)] +
                     ["max later / first"]))
  _print_json("w3", {name: {"epoch_s": ts} for name, ts in times.items()})


def bench_sample():
  from launch import bench_torch  # pylint: disable=import-outside-toplevel
  from rd.generate import generate  # pylint: disable=import-outside-toplevel
  from rd.metrics import format_table  # pylint: disable=import-outside-toplevel
  base, path = _load(FLAGS.model)
  spec = base.spec
  rng = np.random.default_rng(0)
  prompts = rng.integers(1000, min(spec.vocab_size, 30000), size=(FLAGS.batch, FLAGS.prompt_len))
  prompts[:, 0] = spec.bos_token_id or 2
  fns = {RD: lambda: generate(base, None, prompts.tolist(), max_new_tokens=FLAGS.new_tokens,
                              eos_ids=(), bucket=FLAGS.prompt_len).tokens}
  if FLAGS.vs_torch:
    fns["transformers (torch)"] = bench_torch.generate_fn(bench_torch.load_model(path), prompts,
                                                          FLAGS.new_tokens)
  warm, times = alternate(fns, FLAGS.runs)
  tokens = FLAGS.batch * FLAGS.new_tokens
  medians = {name: statistics.median(t) for name, t in times.items()}
  rows = [[name, f"{tokens / medians[name]:.1f}", f"{medians[name]:.3f}",
           f"{min(t):.3f}-{max(t):.3f}", f"{warm[name]:.1f}",
           f"{medians[name] / medians[RD]:.2f}x"] for name, t in times.items()]
  print(f"\nsample: batch {FLAGS.batch}, prompt {FLAGS.prompt_len}, {FLAGS.new_tokens} new tokens, "
        f"{FLAGS.runs} runs, medians")
  print(format_table(rows, ["impl", "tokens/s", "s/run", "range", "warm-up s", "time vs rd"]))


def main(argv):
  del argv
  if FLAGS.fake_devices:  # read when the CPU backend starts, i.e. before the first jax call
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={FLAGS.fake_devices}")
  if FLAGS.workload == "sample":
    bench_sample()
  elif FLAGS.workload == "w3":
    bench_epochs()
  else:
    bench_step(FLAGS.workload)


if __name__ == "__main__":
  app.run(main)
