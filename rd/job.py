"""The job runner: what every method's job needs, written once.

A method is a module with `validate(config)` (cheap checks, one `ConfigError` line, before
anything loads) and `run(job) -> results`; its config names it (`config.job`). `launch/run.py`
parses the flags and calls `main`, which, in this order:

  1. sets up `jax.distributed` when asked (the same flags for every job: a coordinator address
     and process id, or `auto` on a TPU pod / under SLURM);
  2. installs one preemption guard for the whole process, so a SIGTERM at any point (load,
     sampling, a teacher pass, a training, evaluation) is noticed; trainings save a checkpoint
     and stop at their next step, other phases stop at their end (`Job.phase`);
  3. runs the method with a `Job`: the mesh, the base model loaded sharded (each process reads
     its own parameter shards), phases timed and logged, trainings whose finished results are
     reused on a rerun (one atomic marker, `done.json`), and one results writer;
  4. exits 0 when preempted (the rerun resumes) and when finished.

Everything the job writes for people (`results.json`, `predictions.jsonl`, the table, a plot)
comes from process 0, written atomically, so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from rd import sharding
from rd import train as train_lib
from rd.checkpoint import PreemptionGuard
from rd.config import ConfigError
from rd.data.examples import read_json, write_json, write_text
from rd.metrics import format_table
from rd.tokenizer import load_tokenizer
from rd.weights import adapter
from rd.weights.load import load_model

DONE = "done.json"  # a finished phase's marker, written last and atomically


class Preempted(Exception):
  """A SIGTERM stopped the job after saving what it had; rerunning the command resumes."""


def _agreed(flag: bool) -> bool:
  """Process 0's `flag` on every process: a decision that must not differ between processes
  (reuse a finished phase or run it) is taken once, by process 0."""
  if jax.process_count() == 1:
    return flag
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.int32)))


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (nothing to do on one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


@dataclasses.dataclass
class Job:
  """One run of a method in `workdir`: its config, mesh, preemption guard and phase timings."""

  config: ml_collections.ConfigDict
  workdir: str
  guard: PreemptionGuard
  mesh: jax.sharding.Mesh = None
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)
  started: float = dataclasses.field(default_factory=time.perf_counter)

  def __post_init__(self):
    if self.mesh is None:
      self.mesh = sharding.make_mesh(**self.config.mesh)
    os.makedirs(self.workdir, exist_ok=True)

  @property
  def primary(self) -> bool:
    return jax.process_index() == 0

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  # -- phases -----------------------------------------------------------------------------------

  @contextlib.contextmanager
  def phase(self, name: str):
    """Times and logs a phase (repeated names add up); a SIGTERM received during it stops the
    job at its end (`Preempted`), every process at the same phase."""
    start = time.perf_counter()
    logging.info("phase: %s", name)
    yield
    self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 1)
    self.check_preempted(name)

  def check_preempted(self, where: str) -> None:
    if self.guard.check(0):
      logging.warning("preempted after %s: stopping; rerun the command to resume", where)
      raise Preempted(where)

  def once(self, directory: str, compute: Callable[[], Any]) -> Any:
    """`compute()`'s JSON-able result, kept in `<directory>/done.json` so a rerun reads it back
    instead of computing again (every process computes; process 0 writes)."""
    marker = os.path.join(directory, DONE)
    if _agreed(os.path.exists(marker)):
      return read_json(marker)
    value = compute()
    if self.primary:
      os.makedirs(directory, exist_ok=True)
      write_json(marker, value)
    barrier(marker)  # what process 0 wrote in `compute` is there for every process to read
    return value

  # -- model and trainings ------------------------------------------------------------------------

  def load(self, path: str | None = None):
    """(base, tokenizer) of `path` (default `config.model.path`), the base placed on the mesh
    with each process reading only its own parameter shards."""
    path = path or self.config.model.path
    with self.phase("load"):
      base = load_model(path, dtype=self.config.model.dtype,
                        sharding=sharding.param_sharding_fn(self.mesh))
      return base, load_tokenizer(path)

  def replicate(self, tree: Any) -> Any:
    """`tree`'s arrays replicated over the mesh: every LoRA a job evaluates (trained here, read
    back from disk, or freshly initialized) has the same placement, so generation compiles once
    for all of them, on one process or many."""
    return jax.device_put(tree, sharding.replicated(self.mesh))

  def train(self, config: ml_collections.ConfigDict, subdir: str, *, base=None,
            tokenizer=None) -> train_lib.Result:
    """`rd.train.train` in `<workdir>/<subdir>` (resuming there); `Preempted` when a SIGTERM
    stopped it (its checkpoint is saved)."""
    result = train_lib.train(config, self.path(subdir), base=base, tokenizer=tokenizer,
                             guard=self.guard)
    if result.stopped_early:
      raise Preempted(subdir)
    return result

  def trained_lora(self, config: ml_collections.ConfigDict, subdir: str, *, base,
                   tokenizer) -> tuple[Any, dict[str, Any]]:
    """(LoRA, eval losses) of the training in `<workdir>/<subdir>`: trained now, or read back
    when an earlier run finished it (its `done.json`, written after its `lora/`)."""

    def run():
      result = self.train(config, subdir, base=base, tokenizer=tokenizer)
      return {"before": result.before, "after": result.after, "steps": config.train.steps}

    losses = self.once(self.path(subdir), run)
    return self.replicate(adapter.load(self.path(subdir))), losses

  # -- results ----------------------------------------------------------------------------------

  def finish(self, results: dict[str, Any], *, tables: Iterable[str] = (),
             predictions: Iterable[Mapping[str, Any]] = (),
             plot: Callable[[dict[str, Any], str], None] | None = None) -> dict[str, Any]:
    """Adds timings, devices and the config to `results`; process 0 writes `results.json`,
    `predictions.jsonl` (and `results.png` with `plot`) atomically and prints the tables."""
    self.seconds["total"] = round(time.perf_counter() - self.started, 1)
    results = {**results, "seconds": dict(self.seconds),
               "devices": [str(d) for d in jax.devices()],
               "processes": jax.process_count(), "config": self.config.to_dict()}
    if not self.primary:
      return results
    write_text(self.path("results.json"), json.dumps(results, indent=2, default=str))
    write_text(self.path("predictions.jsonl"),
               "".join(json.dumps(p, ensure_ascii=False, default=str) + "\n"
                       for p in predictions))
    if plot is not None:
      plot(results, self.path("results.png"))
    for table in tables:
      print("\n" + table)
    print(format_table([[phase, f"{s:.1f}"] for phase, s in self.seconds.items()],
                       ["phase", "seconds"]))
    return results


def initialize_distributed(mode: str = "off", coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None):
  """`jax.distributed.initialize`: "auto" lets JAX find the pod / SLURM / Open MPI settings;
  otherwise explicit flags start it when there is more than one process."""
  if mode == "auto":
    jax.distributed.initialize()
  elif num_processes and num_processes > 1:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def run(method, config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """Runs `method.run(Job(...))` in this process (after `jax.distributed`, if any): its results,
  or None when a SIGTERM stopped it (its checkpoints are saved; run again to resume)."""
  guard = PreemptionGuard()  # after jax.distributed: it may use JAX's preemption service
  try:
    return method.run(Job(config, workdir, guard))
  except Preempted as stop:
    logging.warning("preempted (%s); its checkpoint is saved: rerun to resume", stop)
    return None
  finally:
    guard.uninstall()


def main(method, config: ml_collections.ConfigDict, workdir: str, **distributed) -> int:
  """The launcher's entry: distributed set-up, then `run`; the exit code (0 when finished or
  preempted, 1 with one line for a config error found once the data is read)."""
  initialize_distributed(**distributed)
  try:
    run(method, config, workdir)
  except ConfigError as e:  # found once the data is read (lengths): one line, no traceback
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0
