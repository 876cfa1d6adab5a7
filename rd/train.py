"""The distillation loop: config in, trained LoRA and a before/after table out.

Read it top to bottom: mesh, base weights, data, state (fresh or resumed), jitted step, loop
(metrics, eval, checkpoints, preemption), final evaluation. Everything a method changes lives in
its config (templates, loss weights, teacher), not here.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
from absl import logging
from tqdm import tqdm

from rd import config as config_lib
from rd import distill
from rd import lora as lora_lib
from rd import sharding
from rd import teacher_cache as teacher_cache_lib
from rd import xla_cpu
from rd.checkpoint import Checkpointer, PreemptionGuard
from rd.data import sources
from rd.data.pipeline import make_iterator
from rd.data.tokenize import model_inputs
from rd.data.templates import Template
from rd.embedded import resolve_model_path
from rd.metrics import MetricsWriter, format_table
from rd.tokenizer import load_tokenizer
from rd.weights import adapter, peft
from rd.weights.export import save_hf
from rd.weights.load import load_model


@dataclasses.dataclass
class Result:
  state: distill.TrainState
  before: dict[str, float]  # eval losses of the untrained student
  after: dict[str, float]
  stopped_early: bool


class NonFiniteLossError(RuntimeError):
  pass


def _data(c, examples, tokenizer, *, shuffle, epochs, seed, workers=0):
  template = Template(teacher=c.data.template_teacher, student=c.data.template_student)
  return make_iterator(examples, tokenizer, template, global_batch=c.data.global_batch,
                       buckets=config_lib.buckets(c), seed=seed, num_epochs=epochs,
                       shuffle=shuffle, drop_remainder=shuffle, add_eos=c.data.add_eos,
                       overflow=c.data.overflow, workers=workers)


def mean_terms(terms_fn, batches) -> dict[str, float]:
  """Exact mean of every loss term over `batches` (`terms_fn(batch) -> {name: (sum, count)}`):
  sums and counts first, then one divide."""
  sums: dict[str, list[float]] = {}
  for batch in batches:
    for name, (s, n) in jax.device_get(terms_fn(batch)).items():
      total = sums.setdefault(name, [0.0, 0.0])
      total[0] += float(s)
      total[1] += float(n)
  return {name: s / max(n, 1.0) for name, (s, n) in sums.items()}


def evaluate(eval_fn, params, base, teacher_lora, examples, c, tokenizer, mesh) -> dict[str, float]:
  """Exact mean of every loss term over the eval examples."""
  terms = lambda batch: eval_fn(params, base, sharding.shard_batch(model_inputs(batch), mesh),  # noqa: E731
                                teacher_lora)
  return mean_terms(terms, _data(c, examples, tokenizer, shuffle=False, epochs=1, seed=0))


def build_teacher_cache(c, base, teacher_lora, examples, tokenizer, mesh, loss_cfg):
  """One teacher pass over all training examples, split over processes (rd/teacher_cache.py)."""
  layers = loss_cfg.hidden_layers if loss_cfg.hidden_weight else ()
  # The base is an argument, not a closure: closed-over weights are baked into the compiled
  # program as constants (Gemma 3 270M: ~20 s more to compile).
  teacher = jax.jit(functools.partial(distill.teacher_outputs, layers=layers))
  teacher_fn = lambda batch: teacher(base, teacher_lora, batch)  # noqa: E731
  batches = _data(c, teacher_cache_lib.pass_examples(examples, jax.process_count()), tokenizer,
                  shuffle=False, epochs=1, seed=0)
  if c.teacher.share_prefixes:
    batches = teacher_cache_lib.share_prefixes(batches)
  start = time.perf_counter()
  cache = teacher_cache_lib.build(teacher_fn, tqdm(batches, desc="teacher cache", leave=False,
                                                   disable=jax.process_index() != 0),
                                  mesh, num_examples=len(examples),
                                  response_len=c.data.response_len)
  logging.info("teacher cache: %d examples, %.1f MB, %.1f s", len(cache.hidden),
               cache.hidden.nbytes / 2**20, time.perf_counter() - start)
  return cache


def initial_params(c, base):
  """The trainables before step 0: a fresh LoRA (B = 0, so the student starts as the base), an
  earlier run's LoRA (`lora.init_from`), or, with `train.trainable="full"`, the model itself."""
  if c.train.trainable == "full":  # a copy: the state is donated, the caller's model is not
    return jax.tree.map(jnp.array, base)
  if not c.lora.init_from:
    return lora_lib.init(base.spec, config_lib.lora_config(c), jax.random.key(c.train.seed))
  lora = adapter.load(c.lora.init_from)
  rank = next(iter(lora.weights.values()))["a"].shape[-1]
  if sorted(lora.weights) != sorted(c.lora.targets) or rank != c.lora.rank:
    raise config_lib.ConfigError(
        f"config.lora.init_from: {c.lora.init_from!r} holds rank {rank} on {sorted(lora.weights)}"
        f"; set lora.rank={rank} and lora.targets={tuple(sorted(lora.weights))} to match")
  return lora


def loop(c, state, iterator, step, *, steps: int, start: int, checkpointer: Checkpointer,
         writer: MetricsWriter, guard: PreemptionGuard, run_eval=None, desc: str = "train"):
  """Steps `start + 1 .. steps` of any trainable: `step(state, host_batch) -> (state, metrics)`
  on `next(iterator)`; metrics every `train.log_every` steps, eval losses every
  `train.eval_every` (with `run_eval(params=...)`), periodic checkpoints (state and data
  iterator), a stop after the step at which `guard` saw a SIGTERM, and a final checkpoint.
  Returns (state, stopped_early)."""
  stopped_early = False
  bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc,
             disable=jax.process_index() != 0)
  step_time = time.perf_counter()
  for i in bar:
    state, metrics = step(state, next(iterator))
    xla_cpu.release_heap_holes(state)  # CPU: memory no step can reuse goes back (rd/xla_cpu.py)
    done = i + 1
    if done % c.train.log_every == 0 or done == steps:
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      metrics["steps_per_s"] = c.train.log_every / (time.perf_counter() - step_time)
      step_time = time.perf_counter()
      writer.write(done, metrics, prefix="train/")
      bar.set_postfix(loss=f"{metrics['loss']:.4f}")
      if metrics["nonfinite"] > c.train.max_nonfinite:
        checkpointer.save(done, state, iterator, force=True)
        checkpointer.close()
        raise NonFiniteLossError(
            f"{desc}: {int(metrics['nonfinite'])} consecutive non-finite steps at step {done}; "
            f"a checkpoint is in {checkpointer.workdir}. Lower the learning rate or check "
            "the data.")
    if run_eval is not None and c.train.eval_every and done % c.train.eval_every == 0:
      writer.write(done, run_eval(params=state.params), prefix="eval/")
    checkpointer.save(done, state, iterator)
    if guard.check(done):
      stopped_early = True
      logging.warning("preempted at step %d: saving a checkpoint and exiting", done)
      break
  bar.close()
  final = int(jax.device_get(state.step))
  if checkpointer.latest_step() != final:
    checkpointer.save(final, state, iterator, force=True)
  checkpointer.close()
  return state, stopped_early


def train(c, workdir: str, *, base=None, tokenizer=None,
          guard: PreemptionGuard | None = None) -> Result:
  """Trains the config's student in `workdir` (resuming from its latest checkpoint).

  `base` and `tokenizer` may be passed in by a job that already loaded `c.model.path` (placed
  on the config's mesh, as `rd.job.Job.load` does; a base elsewhere is moved there); by default
  they are loaded here, each process reading only its parameter shards. `guard`: the process's
  preemption guard (`rd.job` installs one per process); without one, this call installs its
  own for its duration.
  """
  config_lib.validate(c)
  loss_cfg, optim_cfg = config_lib.loss_config(c), config_lib.optim_config(c)
  mesh = sharding.make_mesh(**c.mesh)
  logging.info("mesh %s over %d devices", dict(mesh.shape), mesh.size)

  if base is None:
    base = load_model(c.model.path, dtype=c.model.dtype,
                      sharding=sharding.param_sharding_fn(mesh))
  else:
    base = sharding.place_params(base, mesh)
  tokenizer = tokenizer or load_tokenizer(c.model.path)
  teacher_lora = adapter.load(c.teacher.lora_workdir) if c.teacher.lora_workdir else None
  train_examples = sources.load(c.data.train)
  eval_examples = sources.load(c.data.eval)[:c.data.eval_examples] if c.data.eval else (
      train_examples[:c.data.eval_examples])
  if c.data.overflow == "error":  # nothing is cut: too long stops here, before any training
    config_lib.check_lengths(c, tokenizer, train_examples + eval_examples)
  iterator = _data(c, train_examples, tokenizer, shuffle=True, epochs=None, seed=c.data.seed,
                   workers=c.data.workers)
  cache = (build_teacher_cache(c, base, teacher_lora, train_examples, tokenizer, mesh, loss_cfg)
           if c.teacher.cache and (loss_cfg.kl_weight or loss_cfg.hidden_weight) else None)
  step_batch = cache.attach if cache else (lambda batch: batch)  # noqa: E731

  optimizer = distill.make_optimizer(optim_cfg)
  replicated = sharding.replicated(mesh)
  params = initial_params(c, base)
  full = c.train.trainable == "full"
  if full:  # the model is the trainable state (donated every step); nothing else holds it
    base = None
  state = jax.device_put(distill.init_state(params, optimizer, c.train.seed), replicated)
  checkpointer = Checkpointer(workdir, keep=c.train.keep_checkpoints,
                              every_steps=c.train.checkpoint_every,
                              base_model=resolve_model_path(c.model.path),
                              config=c.to_dict())
  state, resumed = checkpointer.restore_or_init(state, iterator)
  start = int(resumed or 0)

  step_fn = jax.jit(functools.partial(distill.train_step, optimizer=optimizer, loss_cfg=loss_cfg,
                                      full_model=full),
                    donate_argnums=0, out_shardings=(replicated, replicated))
  eval_fn = jax.jit(functools.partial(distill.eval_step, loss_cfg=loss_cfg, full_model=full),
                    out_shardings=replicated)
  run_eval = functools.partial(evaluate, eval_fn, base=base, teacher_lora=teacher_lora,
                               examples=eval_examples, c=c, tokenizer=tokenizer, mesh=mesh)
  writer = MetricsWriter(workdir)
  before = run_eval(params=params)  # the untrained student (B = 0), also on a resumed run
  if start == 0:
    writer.write(0, before, prefix="eval/")

  own_guard = guard is None
  guard = guard or PreemptionGuard()

  def step(state, batch):
    batch = sharding.shard_batch(model_inputs(step_batch(batch)), mesh)
    return step_fn(state, base, batch, teacher_lora)

  state, stopped_early = loop(c, state, iterator, step, steps=c.train.steps, start=start,
                              checkpointer=checkpointer, writer=writer, guard=guard,
                              run_eval=run_eval, desc="distill")
  if own_guard:
    guard.uninstall()
  if stopped_early:
    return Result(state, before, {}, True)

  after = run_eval(params=state.params)
  writer.write(int(state.step), after, prefix="eval/")
  writer.close()
  if full:  # a Hugging Face model directory: the next job's `model.path`
    save_hf(state.params, f"{workdir}/model")
    if jax.process_index() == 0:
      tokenizer.save_pretrained(f"{workdir}/model")
  else:
    adapter.save(state.params, f"{workdir}/lora")
  if c.train.export_peft:  # the same LoRA as a PEFT adapter, for transformers users
    peft.save_peft(state.params, base.spec, c.train.export_peft,
                   base_model_name_or_path=str(resolve_model_path(c.model.path)))
  if c.train.export_merged:  # base + LoRA folded together, as a Hugging Face model directory
    peft.save_merged(base, state.params, c.train.export_merged)
  if jax.process_index() == 0:
    print("\n" + format_table([[name, f"{before[name]:.4f}", f"{after[name]:.4f}"]
                               for name in before], ["eval loss", "before", "after"]))
  return Result(state, before, after, False)
