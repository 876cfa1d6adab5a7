"""TAGI's training (Liao et al., NeurIPS 2024): per-task teacher adapters, and the hypernetwork's
two stages (`rd.methods.tagi.hypernet` writes the student's LoRA from the instruction).

  per-task adapters  `train_task_adapters`: one LoRA per training task, trained on its
                     instances with CE (`rd.train.train`, kl_weight=0, ce_weight=1), all from the
                     same seed; stacked as one `Lora` with leaves [N_tasks, L, ...]
  stage 1, pretrain  plain text cut into (a, b, c) = Example(context=a, query=b, response=c):
                     student = base + hypernet(a) reads b, CE on c   (`TagiLoss(teacher="none")`)
  stage 2, finetune  task examples: student = base + hypernet(instruction) reads the input;
                     CE + λ1·KL(teacher ‖ student) + λ2·MSE(generated LoRA, the task's LoRA),
                     λ2 = adapter_weight · sigmoid(MSE) as in the paper (under stop_gradient:
                     a coefficient, the gradient flows through the MSE). The teacher is the
                     base + the task's LoRA (`teacher="adapter"`) or the base with the
                     instruction in its prompt (`teacher="context"`).

CE and KL are `rd.distill.loss_terms` on the response rows; the adapter term is one more
(sum, count) pair. The frozen base encodes each distinct instruction once (`Lookup`), so a step
runs only the teacher and the student. `train_stage` runs these steps through the engine's
update (`distill.apply_update`) and loop (`rd.train.loop`): mesh and explicit shardings, Orbax
checkpoints with automatic resume, preemption, JSONL and TensorBoard metrics, eval losses
before and after, the parameters in `<workdir>/hypernet`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from rd import config as config_lib
from rd import distill, sharding, train
from rd.methods.tagi import hypernet
from rd.checkpoint import Checkpointer, PreemptionGuard
from rd.data.examples import Example, write_jsonl
from rd.data.pipeline import make_iterator
from rd.data.templates import Template
from rd.data.tokenize import model_inputs
from rd.embedded import resolve_model_path
from rd.lora import Lora
from rd.metrics import MetricsWriter, format_table
from rd.job import barrier

TEACHERS = ("none", "adapter", "context")


@dataclasses.dataclass(frozen=True)
class TagiLoss:
  """What a stage adds to `distill.LossConfig`: who the teacher is, and the adapter term."""

  hypernet: hypernet.HypernetConfig
  teacher: str = "none"  # "none" (stage 1), "adapter" or "context"
  adapter_weight: float = 0.0  # 0 skips the MSE term
  adapter_sigmoid: bool = True  # λ2 = adapter_weight * sigmoid(MSE), else adapter_weight

  def __post_init__(self):
    if self.teacher not in TEACHERS:
      raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")

  @property
  def needs_adapters(self) -> bool:
    return self.teacher == "adapter" or bool(self.adapter_weight)


# ----------------------------------------------------------------------------------------------
# Loss and steps


def gather_adapters(stack: Lora, task_index: jax.Array) -> Lora:
  """The per-example LoRA [B, L, ...] of each example's task, from the stack [N_tasks, L, ...]."""
  return Lora(jax.tree.map(lambda x: jnp.take(x, task_index, axis=0), stack.weights),
              scale=stack.scale)


def adapter_mse(generated: Lora, target: Lora, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sum, count) of the squared differences of every A and B entry, over valid examples [B]."""
  total, per_example = jnp.zeros((), jnp.float32), 0
  for name, ab in generated.weights.items():
    for m in ("a", "b"):
      diff = ab[m].astype(jnp.float32) - target.weights[name][m].astype(jnp.float32)
      total += jnp.sum(jnp.square(diff).reshape(diff.shape[0], -1).sum(-1) * valid)
      per_example += diff[0].size
  return total, valid.sum() * per_example


def loss_terms(params, base, batch, task_adapters: Lora | None, loss_cfg: distill.LossConfig,
               tagi_cfg: TagiLoss) -> dict[str, tuple[jax.Array, jax.Array]]:
  """{term: (sum, count)}: `distill.loss_terms` of the hypernetwork's student, plus the
  adapter MSE when `tagi_cfg.adapter_weight` is set."""
  student = hypernet.hypernet_apply(params, base, batch, cfg=tagi_cfg.hypernet)
  task = gather_adapters(task_adapters, batch["task_index"]) if tagi_cfg.needs_adapters else None
  teacher = task if tagi_cfg.teacher == "adapter" else None
  terms = distill.loss_terms(base, student, teacher, batch, loss_cfg)
  if tagi_cfg.adapter_weight:
    terms["adapter_mse"] = adapter_mse(student, task, batch["example_valid"])
  return terms


def weighted_loss(terms, loss_cfg: distill.LossConfig, tagi_cfg: TagiLoss):
  """CE + λ1·KL (`distill.weighted_loss`) + λ2·MSE; the means carry λ2 as `lambda2`."""
  mse_terms = {k: v for k, v in terms.items() if k == "adapter_mse"}
  loss, means = distill.weighted_loss({k: v for k, v in terms.items() if k not in mse_terms},
                                      loss_cfg)
  if mse_terms:
    s, n = mse_terms["adapter_mse"]
    mse = s / jnp.maximum(n, 1.0)
    lambda2 = tagi_cfg.adapter_weight * (
        jax.nn.sigmoid(jax.lax.stop_gradient(mse)) if tagi_cfg.adapter_sigmoid else 1.0)
    loss = loss + lambda2 * mse
    means.update(adapter_mse=mse, lambda2=jnp.asarray(lambda2, jnp.float32))
  return loss, means


def train_step(state: distill.TrainState, base, batch, task_adapters: Lora | None, *,
               optimizer: optax.GradientTransformation, loss_cfg: distill.LossConfig,
               tagi_cfg: TagiLoss):
  """One update of the hypernetwork (either stage): `distill.apply_update` on TAGI's loss."""

  def objective(params):
    return weighted_loss(loss_terms(params, base, batch, task_adapters, loss_cfg, tagi_cfg),
                         loss_cfg, tagi_cfg)

  return distill.apply_update(state, objective, optimizer)


def eval_step(params, base, batch, task_adapters: Lora | None, *, loss_cfg, tagi_cfg):
  return loss_terms(params, base, batch, task_adapters, loss_cfg, tagi_cfg)


# ----------------------------------------------------------------------------------------------
# Instructions and tasks of a set of examples


@dataclasses.dataclass
class Lookup:
  """Per example: its instruction's embedding (each distinct context embedded once by the
  frozen base) and its task's row in the adapter stack; joined to batches by `example_index`."""

  embeddings: np.ndarray  # [U, d]
  instruction: np.ndarray  # [N] example -> row of `embeddings`
  task: np.ndarray  # [N] example -> task index (0 when there is no adapter stack)

  def attach(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    index = batch["example_index"]
    i = np.where(index >= 0, index, 0)  # padding examples (masked) borrow example 0
    return {**batch, "instruction_embedding": self.embeddings[self.instruction[i]],
            "task_index": self.task[i].astype(np.int32),
            "example_valid": (index >= 0).astype(np.float32)}


def make_lookup(base, tokenizer, examples: Sequence[Example], *, length: int,
                task_names: Sequence[str] = ()) -> Lookup:
  """`task_names` orders the adapter stack; every example's `meta["task"]` must be in it."""
  texts = list(dict.fromkeys(e.context for e in examples))
  row = {t: i for i, t in enumerate(texts)}
  task_row = {t: i for i, t in enumerate(task_names)}
  missing = sorted({e.meta.get("task") for e in examples} - set(task_row)) if task_names else []
  if missing:
    raise ValueError(f"examples of tasks {missing} have no adapter in the stack")
  return Lookup(hypernet.embed_texts(base, tokenizer, texts, length=length),
                np.asarray([row[e.context] for e in examples], np.int32),
                np.asarray([task_row[e.meta["task"]] if task_names else 0 for e in examples],
                           np.int32))


# ----------------------------------------------------------------------------------------------
# Per-task teacher adapters


def adapter_config(c: ml_collections.ConfigDict, data_path: str) -> ml_collections.ConfigDict:
  """The `rd.train` config of one task's adapter: CE on the task's instances, the student's
  template (input only), the hypernetwork's LoRA shape, and the same seed for every task."""
  a = config_lib.base_config()
  a.model.update(c.model.to_dict())
  a.lora.update(rank=c.lora.rank, alpha=c.lora.alpha, targets=tuple(c.lora.targets))
  a.data.update(train=data_path, template_teacher=c.data.template_student,
                template_student=c.data.template_student, teacher_len=c.data.student_len,
                student_len=c.data.student_len, response_len=c.data.response_len,
                add_eos=c.data.add_eos, global_batch=c.data.global_batch,
                eval_examples=c.data.eval_examples)
  a.loss.update(kl_weight=0.0, ce_weight=1.0, chunk_size=c.loss.chunk_size)
  a.optim.update(lr=c.adapters.lr, warmup_steps=min(c.optim.warmup_steps, c.adapters.steps - 1))
  a.mesh.update(c.mesh.to_dict())
  a.train.update(steps=c.adapters.steps, seed=c.train.seed, log_every=c.train.log_every,
                 checkpoint_every=c.train.checkpoint_every)
  return a


def dirname(task: str) -> str:
  """A task's name as a directory name."""
  return re.sub(r"[^\w.-]", "_", task)


def train_task_adapters(job, tasks: dict[str, Sequence[Example]], subdir: str, *, base,
                        tokenizer) -> tuple[list[str], Lora]:
  """One CE LoRA per task in `<workdir>/<subdir>/<task>` (`job.trained_lora`: a finished one is
  read back, a preempted one stops the job); returns the task names and their LoRAs stacked
  with leaves [N_tasks, L, ...]."""
  names, loras = list(tasks), []
  for name in names:
    task_dir = os.path.join(subdir, dirname(name))
    data = job.path(task_dir, "train.jsonl")
    if job.primary:
      os.makedirs(job.path(task_dir), exist_ok=True)
      write_jsonl(data, tasks[name])  # the same examples on every run: a resume sees them
    barrier(data)
    logging.info("per-task adapter %s: %d examples", name, len(tasks[name]))
    lora, _ = job.trained_lora(adapter_config(job.config, data), task_dir, base=base,
                               tokenizer=tokenizer)
    loras.append(lora)
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *[l.weights for l in loras])
  return names, Lora(stacked, scale=loras[0].scale)


# ----------------------------------------------------------------------------------------------
# One stage's loop


@dataclasses.dataclass
class Stage:
  """Everything one stage trains on; `steps` and `lr` override the config's train/optim."""

  name: str
  examples: Sequence[Example]
  lookup: Lookup
  eval_examples: Sequence[Example]
  eval_lookup: Lookup
  template: Template
  loss: distill.LossConfig
  tagi: TagiLoss
  steps: int
  lr: float


@dataclasses.dataclass
class StageResult:
  params: Any
  before: dict[str, float]  # eval losses of the stage's starting hypernetwork
  after: dict[str, float]
  stopped_early: bool


def _batches(c, stage: Stage, tokenizer, *, train_split: bool):
  examples = stage.examples if train_split else stage.eval_examples
  return make_iterator(examples, tokenizer, stage.template, global_batch=c.data.global_batch,
                       buckets=config_lib.buckets(c), seed=c.data.seed,
                       num_epochs=None if train_split else 1, shuffle=train_split,
                       drop_remainder=train_split, add_eos=c.data.add_eos)


def _device_batch(batch, lookup: Lookup, mesh):
  return sharding.shard_batch(model_inputs(lookup.attach(batch)), mesh)


def _eval_losses(eval_fn, params, base, task_adapters, c, stage: Stage, tokenizer, mesh):
  """Exact means of every term over the stage's eval examples (`rd.train.mean_terms`)."""
  terms = lambda batch: eval_fn(params, base, _device_batch(batch, stage.eval_lookup, mesh),  # noqa: E731
                                task_adapters)
  return train.mean_terms(terms, _batches(c, stage, tokenizer, train_split=False))


@functools.lru_cache(maxsize=8)
def compiled(mesh, optim_cfg: distill.OptimConfig, loss_cfg: distill.LossConfig,
             tagi_cfg: TagiLoss):
  """(optimizer, jitted step, jitted eval) for these settings, built once per process: a
  resumed or repeated stage with the same settings and shapes compiles nothing new."""
  optimizer = distill.make_optimizer(optim_cfg)
  replicated = sharding.replicated(mesh)
  kwargs = dict(loss_cfg=loss_cfg, tagi_cfg=tagi_cfg)
  step_fn = jax.jit(functools.partial(train_step, optimizer=optimizer, **kwargs),
                    donate_argnums=0, out_shardings=(replicated, replicated))
  eval_fn = jax.jit(functools.partial(eval_step, **kwargs), out_shardings=replicated)
  return optimizer, step_fn, eval_fn


def train_stage(c, stage: Stage, workdir: str, *, base, tokenizer, mesh, params,
                task_adapters: Lora | None = None,
                guard: PreemptionGuard | None = None) -> StageResult:
  """Trains the hypernetwork `params` for one stage in `workdir` (resuming from its latest
  checkpoint) with `rd.train.loop`; writes metrics, checkpoints and `<workdir>/hypernet`.
  `base` must already be placed on `mesh` (`sharding.place_params`)."""
  optim_cfg = dataclasses.replace(config_lib.optim_config(c), lr=stage.lr,
                                  total_steps=stage.steps,
                                  warmup_steps=min(c.optim.warmup_steps, stage.steps - 1))
  optimizer, step_fn, eval_fn = compiled(mesh, optim_cfg, stage.loss, stage.tagi)
  replicated = sharding.replicated(mesh)
  if task_adapters is not None:
    task_adapters = jax.device_put(task_adapters, replicated)
  iterator = _batches(c, stage, tokenizer, train_split=True)
  start_params = jax.tree.map(jnp.copy, params)  # the state is donated; the caller's is not
  state = jax.device_put(distill.init_state(start_params, optimizer, c.train.seed), replicated)
  checkpointer = Checkpointer(workdir, keep=c.train.keep_checkpoints,
                              every_steps=c.train.checkpoint_every,
                              base_model=resolve_model_path(c.model.path),
                              config=c.to_dict(), metadata={"stage": stage.name})
  state, resumed = checkpointer.restore_or_init(state, iterator)
  start = int(resumed or 0)

  run_eval = functools.partial(_eval_losses, eval_fn, base=base, task_adapters=task_adapters,
                               c=c, stage=stage, tokenizer=tokenizer, mesh=mesh)
  writer = MetricsWriter(workdir)
  before = run_eval(params=params)
  if start == 0:
    writer.write(0, before, prefix="eval/")

  def step(state, batch):
    return step_fn(state, base, _device_batch(batch, stage.lookup, mesh), task_adapters)

  own_guard = guard is None
  guard = guard or PreemptionGuard()
  state, stopped_early = train.loop(c, state, iterator, step, steps=stage.steps, start=start,
                                    checkpointer=checkpointer, writer=writer, guard=guard,
                                    desc=stage.name)
  if own_guard:
    guard.uninstall()
  final = int(jax.device_get(state.step))
  if stopped_early:
    return StageResult(state.params, before, {}, True)

  after = run_eval(params=state.params)
  writer.write(final, after, prefix="eval/")
  writer.close()
  hypernet.save(state.params, stage.tagi.hypernet, os.path.join(workdir, "hypernet"))
  if jax.process_index() == 0:
    print(f"\n{stage.name}\n" + format_table(
        [[name, f"{before[name]:.4f}", f"{after[name]:.4f}"] for name in before],
        ["eval loss", "before", "after"]))
  return StageResult(state.params, before, after, False)
