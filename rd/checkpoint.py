"""Checkpointing for the training loop: Orbax saves of the train state, the data iterator and a
JSON record of the run; automatic resume; save-and-exit on preemption (SIGTERM).

One checkpoint step directory `<workdir>/checkpoints/<step>/` holds three Orbax items:

* `state`: the train state, any pytree of jax arrays (LoRA / trainables, optax state, step,
  PRNG key...) through `StandardSave` / `StandardRestore`. Typed PRNG keys (`jax.random.key`)
  are stored by Orbax as their raw `key_data` plus the key impl and come back as typed keys;
  legacy uint32 keys (`jax.random.PRNGKey`) are plain arrays. Python scalars come back as
  Python scalars when the restore target holds Python scalars.
* `data`: the grain iterator's state (`grain.checkpoint.CheckpointSave/CheckpointRestore`): one
  JSON file per process, `process_<i>-of-<n>.json`, so a resume needs the same process count.
* `meta`: JSON, written by the primary process only: the base model's path and fingerprint
  (`base_model_fingerprint`), the run's config dict, rd / jax / orbax versions, user metadata.
  The base model's weights are never saved, only referenced.

Saves are atomic. On a POSIX filesystem Orbax writes `<step>.orbax-checkpoint-tmp*/` and
renames it to `<step>/` once every item is written (`AtomicityMode.ATOMIC_RENAME`, which is what
`AUTO` resolves to off GCS; we set it explicitly for local paths), so a crash or `kill -9`
leaves at worst a tmp directory that is never picked up on resume and is deleted at the next
start (`cleanup_tmp_directories=True`). A crash loses only the steps since the last completed
checkpoint.

Async saves (the default) copy the arrays to host memory before `save` returns, so the caller
may donate or overwrite the state right away; the files are written in a background thread.
The next `save`, `wait()` and `close()` block until it is done. A new process (a resume) sees
only renamed, complete steps; within a run, `latest_step()` already includes a save in flight.

Typical loop::

  guard = PreemptionGuard()          # after jax.distributed.initialize(), if multi-process
  ckpt = Checkpointer(workdir, every_steps=cfg.ckpt_every, base_model=model_path,
                      config=cfg.to_dict())
  state, restored = ckpt.restore_or_init(init_state, data_iter)   # or a zero-arg init fn
  step = 0 if restored is None else restored
  while step < total_steps:
    state = train_step(state, next(data_iter)); step += 1
    if guard.check(step):            # every step, on every process, same step
      ckpt.save(step, state, data_iter, force=True)
      ckpt.close()                   # waits for the async write
      sys.exit(0)
    ckpt.save(step, state, data_iter)   # only when step % every_steps == 0
  ckpt.save(step, state, data_iter, force=True)
  ckpt.close()

`step` is the number of updates already applied to `state` (so the data iterator has yielded
exactly the batches of those updates); step 0 is never saved periodically.

Multi-process: every process constructs the `Checkpointer` and calls `save` / `restore_or_init`
/ `wait` / `close` at the same points; Orbax coordinates (barriers; arrays written by their
owning processes, `meta` and step metadata by process 0). This module writes no files itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

import grain.checkpoint as grain_checkpoint  # registers CheckpointSave/CheckpointRestore

log = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
_STATE, _DATA, _META = "state", "data", "meta"
_CHUNK = 1 << 20  # bytes read from each sampled region of a base-model file
_HASH_METHOD = "sha256(size, first/middle/last MiB) per file; v1"


class BaseModelMismatchError(RuntimeError):
  """The checkpoint being resumed was trained on top of a different base model."""


# ---------------------------------------------------------------------------------------------
# Base-model fingerprint.


def _file_fingerprint(path: Path, digest) -> None:
  size = path.stat().st_size
  digest.update(f"size={size}\n".encode())
  with open(path, "rb") as f:
    if size <= 3 * _CHUNK:
      digest.update(f.read())
      return
    for offset in (0, (size - _CHUNK) // 2, size - _CHUNK):
      f.seek(offset)
      digest.update(f.read(_CHUNK))


def base_model_fingerprint(path: str | os.PathLike) -> str:
  """A cheap content fingerprint of a base-model file or directory (hex sha256).

  Per file: sha256 over its size and its first, middle and last MiB (the whole file when it is
  at most 3 MiB). The modification time is deliberately left out: copying or re-downloading
  the same weights (a new node, a fresh cache) changes it without changing the model, and the
  point of the check is to catch a different model, which changes the size or the sampled bytes
  (GGUF / safetensors headers hold every tensor's name, dtype, shape and offset). For a
  directory, every regular non-hidden file (sorted relative paths, `*.lock` and rd's
  `*.sha256.json` stamps skipped) is hashed with its relative path.
  """
  path = Path(path)
  digest = hashlib.sha256()
  if path.is_dir():
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts)
                   and not p.name.endswith((".lock", ".sha256.json")))
    if not files:
      raise FileNotFoundError(f"base model directory {str(path)!r} holds no files")
    for p in files:
      digest.update(f"file={p.relative_to(path).as_posix()}\n".encode())
      _file_fingerprint(p, digest)
  elif path.is_file():
    _file_fingerprint(path, digest)
  else:
    raise FileNotFoundError(f"base model path {str(path)!r} does not exist")
  return digest.hexdigest()


def _rd_version() -> str:
  import rd  # pylint: disable=import-outside-toplevel
  version = getattr(rd, "__version__", None)
  if version:
    return str(version)
  try:
    return importlib.metadata.version("rd")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def _jsonable(obj: Any) -> Any:
  """`obj` as plain JSON data (non-JSON leaves such as tuples' items or dtypes via `str`)."""
  if hasattr(obj, "to_dict") and callable(obj.to_dict):  # ml_collections.ConfigDict
    obj = obj.to_dict()
  return json.loads(json.dumps(obj, default=str))


# ---------------------------------------------------------------------------------------------
# Preemption.


def _jax_preemption_service_active() -> bool:
  """True when `jax.distributed` runs JAX's preemption sync service (it owns SIGTERM then)."""
  if not jax.distributed.is_initialized():
    return False
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=import-outside-toplevel
    return jax_distributed.global_state.preemption_sync_manager is not None
  except (ImportError, AttributeError):  # internals moved: trust the config flag
    return bool(getattr(jax.config, "jax_enable_preemption_service", True))


class PreemptionGuard:
  """Turns SIGTERM (the usual preemption notice) into a flag the training loop polls.

  The signal handler only sets a flag: no I/O, no locks, no JAX calls happen inside it (Python
  runs it in the main thread between bytecodes, so a long device computation delays it but the
  flag is never lost). Call `check(step)` once per step, on every process with the same step;
  when it returns True, force-save, `close()` the checkpointer and exit with status 0.

  Multi-process runs (`jax.distributed.initialize()` done before the guard is built): JAX's
  preemption sync service installs its own (C++) SIGTERM notifier and agrees across processes on
  a step at which all of them stop; `check` then returns
  `jax.experimental.multihost_utils.reached_preemption_sync_point(step)` and no Python handler is
  installed (it would replace JAX's). If that service is disabled
  (`jax_enable_preemption_service=False`), the Python handler is installed and `check` combines
  the processes' flags with a `process_allgather` each step (a small collective), so every
  process stops at the same step. Single process: just the flag.
  """

  def __init__(self, signals: Iterable[int] = (signal.SIGTERM,), *, install: bool = True):
    self._signals = tuple(signals)
    self._stop = False
    self._signum: int | None = None
    self._previous: dict[int, Any] = {}
    if install:
      self.install()

  def install(self) -> "PreemptionGuard":
    if _jax_preemption_service_active():
      log.info("PreemptionGuard: using JAX's preemption sync service for %s", self._signals)
      return self
    if threading.current_thread() is not threading.main_thread():
      raise RuntimeError("PreemptionGuard must be installed from the main thread "
                         "(Python delivers signals to the main thread only)")
    for signum in self._signals:
      if signum not in self._previous:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def uninstall(self) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    self._previous.clear()

  def __enter__(self) -> "PreemptionGuard":
    return self

  def __exit__(self, *exc) -> None:
    self.uninstall()

  def _handle(self, signum, frame) -> None:  # the signal handler: set flags, nothing else
    del frame
    self._signum = signum
    self._stop = True

  def request_stop(self) -> None:
    """Ask the loop to stop as if signalled (single process; tests)."""
    self._stop = True

  @property
  def should_stop(self) -> bool:
    """Whether a stop was requested (signal, `request_stop`, or a reached sync point)."""
    return self._stop

  @property
  def signal_received(self) -> int | None:
    return self._signum

  def check(self, step: int) -> bool:
    """Whether the loop should save and stop after `step`; call every step on every process."""
    if _jax_preemption_service_active():
      if multihost_utils.reached_preemption_sync_point(int(step)):
        self._stop = True
    elif jax.process_count() > 1:
      flags = multihost_utils.process_allgather(np.asarray(self._stop, np.int32))
      self._stop = bool(np.any(flags))
    return self._stop


# ---------------------------------------------------------------------------------------------
# Checkpointer.


@dataclasses.dataclass
class _EveryNSteps:
  """Save decision: step > 0 and step % n == 0 (Orbax's FixedIntervalPolicy also saves step 0)."""

  n: int

  def should_save(self, step, previous_steps, *, context) -> bool:
    del previous_steps, context
    return step.step > 0 and step.step % self.n == 0


def abstract_state(state: Any) -> Any:
  """`state` with each jax array replaced by a `jax.ShapeDtypeStruct` carrying its sharding."""

  def leaf(x):
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x

  return jax.tree.map(leaf, state)


def _default_sharding() -> jax.sharding.Sharding:
  """Where a restored array without a target sharding goes: the default device (single
  process), or replicated over all devices (multi-process)."""
  if jax.process_count() == 1:
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("devices",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _with_shardings(target: Any) -> Any:
  """Give every `ShapeDtypeStruct` without a sharding the default one (Orbax would otherwise
  restore it as a host numpy array)."""

  def leaf(x):
    if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None:
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_default_sharding(),
                                  weak_type=x.weak_type)
    return x

  return jax.tree.map(leaf, target)


def _is_abstract(state: Any) -> bool:
  leaves = jax.tree.leaves(state)
  return bool(leaves) and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)


def _local_path(path: epath.Path) -> bool:
  return "://" not in os.fspath(path)  # not gs://, s3://, ...


class Checkpointer:
  """Orbax `CheckpointManager` over `<workdir>/checkpoints` with the items state / data / meta.

  Args:
    workdir: the run's directory; checkpoints go to `<workdir>/<subdir>`.
    keep: how many most recent checkpoints to keep (None: all).
    every_steps: periodic save interval for `save` (steps > 0 with `step % every_steps == 0`).
    async_save: write in a background thread (`save` returns after the device-to-host copy).
    base_model: path of the base model file or directory; recorded (path + fingerprint) and
      checked on resume. None: nothing recorded, nothing checked.
    config: the run's config (a dict or `ml_collections.ConfigDict`), recorded in `meta`.
    metadata: extra JSON-able data recorded in `meta`.
    allow_base_change: default for `restore_or_init(allow_base_change=...)`.
    subdir: the checkpoint directory's name under `workdir`.
  """

  def __init__(self, workdir: str | os.PathLike, *, keep: int | None = 3, every_steps: int = 1000,
               async_save: bool = True, base_model: str | os.PathLike | None = None,
               config: Any = None, metadata: Mapping[str, Any] | None = None,
               allow_base_change: bool = False, subdir: str = CHECKPOINT_SUBDIR):
    if every_steps < 1:
      raise ValueError(f"every_steps must be >= 1, got {every_steps}")
    if keep is not None and keep < 1:
      raise ValueError(f"keep must be >= 1 or None, got {keep}")
    workdir = os.fspath(workdir)
    # Orbax's tensorstore writes need absolute paths ("Checkpoint path should be absolute").
    self.workdir = epath.Path(os.path.abspath(workdir) if "://" not in workdir else workdir)
    self.directory = self.workdir / subdir
    self.every_steps = int(every_steps)
    self.allow_base_change = allow_base_change
    if base_model is not None:
      base_path = Path(base_model).expanduser().resolve()
      self._base: dict[str, str] | None = {
          "path": str(base_path), "hash": base_model_fingerprint(base_path),
          "hash_method": _HASH_METHOD}
    else:
      self._base = None
    self._meta = {
        "rd_version": _rd_version(),
        "jax_version": jax.__version__,
        "orbax_version": ocp.__version__ if hasattr(ocp, "__version__") else "unknown",
        "base_model": self._base,
        "config": _jsonable(config) if config is not None else None,
        "metadata": _jsonable(dict(metadata)) if metadata is not None else None,
    }
    cm = ocp.checkpoint_managers
    atomicity = (ocp.options.AtomicityOptions(mode=ocp.options.AtomicityMode.ATOMIC_RENAME)
                 if _local_path(self.directory) else None)  # None: AUTO (commit file on GCS)
    options = ocp.CheckpointManagerOptions(
        # `max_to_keep` / `save_interval_steps` are documented as deprecated in favour of these:
        preservation_policy=cm.LatestN(n=keep),
        save_decision_policy=cm.AnySavePolicy([
            _EveryNSteps(self.every_steps),
            cm.PreemptionCheckpointingPolicy(),  # multi-process: JAX's preemption sync point
        ]),
        enable_async_checkpointing=async_save,
        atomicity_options=atomicity,
        cleanup_tmp_directories=True,  # a crashed save's `<step>.orbax-checkpoint-tmp-*`
        create=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._closed = False

  # -- queries --------------------------------------------------------------------------------

  @property
  def manager(self) -> ocp.CheckpointManager:
    return self._manager

  def latest_step(self) -> int | None:
    """The newest checkpoint's step (including one whose async write is still running)."""
    return self._manager.latest_step()

  def all_steps(self) -> Sequence[int]:
    return self._manager.all_steps()

  def read_meta(self, step: int | None = None) -> dict[str, Any]:
    """The `meta` JSON of `step` (default: the latest)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    self.wait()  # a still-running async save of `step` must be finished before reading it
    restored = self._manager.restore(step, args=ocp.args.Composite(
        **{_META: ocp.args.JsonRestore()}))
    return dict(restored[_META])

  # -- save -----------------------------------------------------------------------------------

  def save(self, step: int, state: Any, data_iterator: Any = None, *,
           force: bool = False) -> bool:
    """Save when `step % every_steps == 0` (step > 0), at JAX's preemption sync point, or when
    `force`; returns whether a save was started. A step that already has a checkpoint is not
    saved again (so a forced save right after a periodic one is a no-op).

    Call on every process. With `async_save` this returns once the arrays are on the host; the
    write continues in the background (`wait()`).
    """
    step = int(step)
    if step in self._manager.all_steps():
      return False
    if not force and not self._manager.should_save(step):
      return False
    items = {_STATE: ocp.args.StandardSave(state),
             _META: ocp.args.JsonSave({**self._meta, "step": step, "saved_at": time.time()})}
    if data_iterator is not None:
      items[_DATA] = grain_checkpoint.CheckpointSave(data_iterator)
    return bool(self._manager.save(step, args=ocp.args.Composite(**items), force=True))

  def wait(self) -> None:
    """Block until pending async saves are on disk (renamed into place)."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Wait for pending saves and deletions, release Orbax's threads. Idempotent."""
    if not self._closed:
      self._manager.wait_until_finished()
      self._manager.close()
      self._closed = True

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # -- restore --------------------------------------------------------------------------------

  def check_base_model(self, stored: Mapping[str, Any] | None, *,
                       allow_base_change: bool | None = None) -> None:
    """Raise `BaseModelMismatchError` when the stored base model's fingerprint differs from the
    current one (unless allowed). Nothing to compare on either side: a warning, no error."""
    allow = self.allow_base_change if allow_base_change is None else allow_base_change
    current = self._base
    if not stored or not current:
      if stored != current:
        log.warning("base model not recorded on both sides (checkpoint: %s, this run: %s); "
                    "not checked", stored and stored.get("path"), current and current["path"])
      return
    same_method = stored.get("hash_method") == current["hash_method"]
    if same_method and stored.get("hash") == current["hash"]:
      if stored.get("path") != current["path"]:
        log.info("base model moved: %s -> %s (same fingerprint)", stored.get("path"),
                 current["path"])
      return
    message = (f"the checkpoint in {self.directory} was trained on base model "
               f"{stored.get('path')!r} (fingerprint {stored.get('hash')}), but this run uses "
               f"{current['path']!r} (fingerprint {current['hash']}); a resumed run must keep "
               "its base model. Use the original base model, a fresh workdir, or "
               "allow_base_change=True.")
    if not allow:
      raise BaseModelMismatchError(message)
    log.warning("allow_base_change=True: %s", message)

  def restore_or_init(self, abstract_or_init_state: Any, data_iterator: Any = None, *,
                      step: int | None = None,
                      allow_base_change: bool | None = None) -> tuple[Any, int | None]:
    """Resume from the latest checkpoint in the workdir (or `step`), else initialize.

    `abstract_or_init_state` is one of:
      * a concrete state (pytree of jax arrays): returned as is when there is no checkpoint;
        otherwise the checkpoint is restored with its shapes, dtypes and shardings;
      * a zero-argument, traceable function returning the state: called only when there is no
        checkpoint; else the restore target is `jax.eval_shape` of it (shardings as the
        function's outputs declare them, e.g. a jitted init with `out_shardings`; Python
        scalars in its output come back as 0-d jax arrays);
      * an abstract state (pytree of `jax.ShapeDtypeStruct`, with `.sharding` for sharded
        arrays, e.g. from `abstract_state`): restore only, FileNotFoundError without a
        checkpoint.
    A `ShapeDtypeStruct` without a sharding is restored to the default device (single process)
    or replicated over all devices (multi-process), never as a host numpy array.

    `data_iterator` (a grain `DatasetIterator`, or None) gets its state restored in place.
    Returns `(state, restored_step)`, `restored_step` None when nothing was restored. Raises
    `BaseModelMismatchError` when the stored base-model fingerprint differs from this run's.
    """
    if step is None:
      self._manager.reload()
      step = self._manager.latest_step()
    if step is None:
      if callable(abstract_or_init_state):
        return abstract_or_init_state(), None
      if _is_abstract(abstract_or_init_state):
        raise FileNotFoundError(f"no checkpoint in {self.directory} and no initial state given "
                                "(an abstract state can only be restored)")
      return abstract_or_init_state, None

    self.wait()
    meta = self.read_meta(step)
    self.check_base_model(meta.get("base_model"), allow_base_change=allow_base_change)

    if callable(abstract_or_init_state):
      target = jax.eval_shape(abstract_or_init_state)
    elif _is_abstract(abstract_or_init_state):
      target = abstract_or_init_state
    else:
      target = abstract_state(abstract_or_init_state)
    items = {_STATE: ocp.args.StandardRestore(_with_shardings(target))}
    if data_iterator is not None:
      data_dir = self.directory / str(step) / _DATA
      if not data_dir.exists():
        raise FileNotFoundError(f"checkpoint step {step} in {self.directory} has no data "
                                "iterator state, but a data iterator was given to restore")
      items[_DATA] = grain_checkpoint.CheckpointRestore(data_iterator)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    log.info("restored checkpoint step %d from %s", step, self.directory)
    return restored[_STATE], step


__all__ = [
    "BaseModelMismatchError", "Checkpointer", "PreemptionGuard", "abstract_state",
    "base_model_fingerprint",
]
