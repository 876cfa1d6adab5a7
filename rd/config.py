"""The distillation job's configuration: defaults, validation, and typed views.

Experiment files in `configs/` start from `base_config()` and override fields. `validate` runs
before anything is loaded or compiled and raises one `ConfigError` line naming the field and
the fix. `ml_collections` already rejects unknown keys and wrongly typed command-line overrides.
"""

from __future__ import annotations

import os

import ml_collections

from rd import lora as lora_lib
from rd.data import sources
from rd.data import tokenize
from rd.data.templates import Template
from rd.data.tokenize import Buckets
from rd.distill import LossConfig, OptimConfig
from rd.losses import DIVERGENCES
from rd.models.decoder import REMAT_POLICIES


TRAINABLES = ("lora", "full")


class ConfigError(ValueError):
  """A bad configuration value, raised before any expensive work starts."""


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "rd.methods.distill"  # the module whose run(job) this config drives (launch/run.py)
  c.model = dict(path="gemma3-270m", dtype="float32")
  # init_from: start the student from an earlier run's LoRA (its workdir or adapter directory):
  # sequential composed distillation, or fine-tuning on top of a distilled student.
  c.lora = dict(rank=16, alpha=16.0, targets=("q", "k", "v", "o"), init_from="")
  # Teacher: the base with the context in its prompt, plus optionally a LoRA from an rd
  # checkpoint directory (the workdir of an earlier run). cache: run the teacher once over the
  # training examples and reuse its response rows every epoch (exact; rd/teacher_cache.py).
  # share_prefixes: in that pass, run a context shared by a batch's examples once (exact;
  # rd/data/shared_prefix.py).
  c.teacher = dict(lora_workdir="", cache=False, share_prefixes=True)
  # workers: processes that featurize training batches (grain's mp_prefetch; 0: in this one).
  # overflow: "error" (default): before training, every example is measured with the tokenizer
  # and a sequence or response longer than its length stops the job with one line naming the
  # field and the length needed; "truncate": cut (responses from the right, prompts from the
  # left), counted and logged.
  c.data = dict(train="", eval="", template_teacher="{context}\n\n{query}",
                template_student="{query}", teacher_len=256, student_len=128, response_len=32,
                add_eos=False, global_batch=8, seed=0, eval_examples=64, workers=0,
                overflow="error")
  # teacher_temperature: the teacher side's T when it differs from temperature (0: the same).
  # teacher_topk: > 0 distils only the teacher's k most likely tokens per response row, their
  # probabilities renormalized (forward KL; rd.losses.distill_topk says how that changes the
  # objective); 0: the whole vocabulary.
  c.loss = dict(kl_weight=1.0, divergence="forward_kl", temperature=1.0, teacher_temperature=0.0,
                ce_weight=0.0, hidden_weight=0.0, hidden_layers=(), chunk_size=256, remat="none",
                teacher_topk=0)
  c.optim = dict(lr=1e-3, warmup_steps=10, end_lr_factor=0.1, weight_decay=0.0, b1=0.9,
                 b2=0.999, clip_norm=1.0)
  c.mesh = dict(data=-1, fsdp=1, tensor=1)
  # trainable: "lora" (the default: base frozen) or "full" (every base weight trains, with CE
  # only: training a small model from scratch, e.g. configs/addition.py's scratch-pad teacher;
  # the model is replicated, and written to <workdir>/model as a Hugging Face directory).
  c.train = dict(steps=100, seed=0, log_every=10, eval_every=0, checkpoint_every=50,
                 trainable="lora",
                 keep_checkpoints=3, max_nonfinite=10, export_peft="",
                 export_merged="")
  return ml_collections.ConfigDict(c)


def check(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}: {message}")


def validate(c: ml_collections.ConfigDict) -> None:
  """Checks values and paths; cheap, so bad input fails in well under a second."""
  from rd.embedded import DEFAULT_MODEL  # pylint: disable=import-outside-toplevel
  check(c.model.path == DEFAULT_MODEL or os.path.exists(c.model.path), "model.path",
         f"{c.model.path!r} does not exist; give an HF directory, a .gguf file or "
         f"{DEFAULT_MODEL!r}")
  check(c.model.dtype in ("float32", "bfloat16"), "model.dtype", "use float32 or bfloat16")
  check(bool(c.data.train), "data.train", "set the training data (see rd/data/sources.py)")
  for field in ("train", "eval"):
    problem = c.data[field] and sources.check(c.data[field])
    check(not problem, f"data.{field}", str(problem))
  if c.teacher.lora_workdir:
    check(os.path.isdir(c.teacher.lora_workdir), "teacher.lora_workdir",
           f"{c.teacher.lora_workdir!r} is not a directory")
  check(c.data.global_batch > 0, "data.global_batch", "must be > 0")
  check(c.data.workers >= 0, "data.workers", "must be >= 0 (0: featurize in this process)")
  check(c.data.response_len < min(c.data.teacher_len, c.data.student_len), "data.response_len",
         "must be shorter than data.teacher_len and data.student_len")
  check(c.data.overflow in ("error", "truncate"), "data.overflow", "use 'error' or 'truncate'")
  check(c.loss.divergence in DIVERGENCES, "loss.divergence", f"choose from {DIVERGENCES}")
  check(c.loss.teacher_topk >= 0, "loss.teacher_topk", "must be >= 0 (0: the whole vocabulary)")
  check(not c.loss.teacher_topk or c.loss.divergence == "forward_kl", "loss.teacher_topk",
        "the top-k teacher is a forward KL: set loss.divergence=forward_kl or teacher_topk=0")
  check(c.loss.remat in REMAT_POLICIES, "loss.remat", f"choose from {sorted(REMAT_POLICIES)}")
  check(c.loss.temperature > 0, "loss.temperature", "must be > 0")
  check(c.loss.teacher_temperature >= 0, "loss.teacher_temperature",
         "must be > 0, or 0 for the same as loss.temperature")
  check(c.loss.kl_weight or c.loss.ce_weight or c.loss.hidden_weight, "loss",
         "every loss weight is 0; set loss.kl_weight, loss.ce_weight or loss.hidden_weight")
  check(not c.loss.hidden_weight or bool(c.loss.hidden_layers), "loss.hidden_layers",
         "hidden alignment needs at least one layer index")
  check(c.optim.lr > 0, "optim.lr", "must be > 0")
  check(c.train.steps > 0, "train.steps", "must be > 0")
  check(set(c.lora.targets) <= set(lora_lib.TARGETS), "lora.targets",
         f"unknown {sorted(set(c.lora.targets) - set(lora_lib.TARGETS))}; "
         f"choose from {lora_lib.TARGETS}")
  check(c.lora.rank >= 1, "lora.rank", "must be >= 1")
  if c.lora.init_from:
    check(os.path.isdir(c.lora.init_from), "lora.init_from",
           f"{c.lora.init_from!r} is not a directory (give an earlier run's workdir)")
  check(c.train.trainable in TRAINABLES, "train.trainable", f"choose from {TRAINABLES}")
  if c.train.trainable == "full":
    check(not (c.loss.kl_weight or c.loss.hidden_weight), "train.trainable",
           "full training is cross-entropy only: set loss.kl_weight=0, loss.hidden_weight=0 "
           "and loss.ce_weight=1 (distill into a LoRA instead)")
    check(not (c.lora.init_from or c.train.export_peft or c.train.export_merged),
           "train.trainable", "full training has no LoRA (it writes <workdir>/model): unset "
           "lora.init_from, train.export_peft and train.export_merged")


def lora_config(c) -> lora_lib.LoraConfig:
  return lora_lib.LoraConfig(rank=c.lora.rank, alpha=c.lora.alpha, targets=tuple(c.lora.targets))


def loss_config(c) -> LossConfig:
  return LossConfig(**{**c.loss.to_dict(), "hidden_layers": tuple(c.loss.hidden_layers)})


def optim_config(c) -> OptimConfig:
  return OptimConfig(total_steps=c.train.steps, **c.optim.to_dict())


def check_lengths(c, tokenizer, examples) -> dict[str, int]:
  """Measures `examples` with the tokenizer as training will see them; raises one `ConfigError`
  naming the length field to raise (and to what) when something would be cut. Returns the
  longest teacher / student sequence and response."""
  template = Template(teacher=c.data.template_teacher, student=c.data.template_student)
  need = tokenize.longest(tokenizer, template, examples, add_eos=c.data.add_eos)
  for side in ("response", "teacher", "student"):
    check(need[side] <= c.data[f"{side}_len"], f"data.{side}_len",
           f"{c.data[f'{side}_len']} is too short for this data: its longest {side} "
           f"{'is' if side == 'response' else 'sequence is'} {need[side]} tokens; set "
           f"data.{side}_len={need[side]} or more (or data.overflow=truncate to cut)")
  return need


def buckets(c) -> Buckets:
  return Buckets.fixed(c.data.teacher_len, c.data.student_len, c.data.response_len)
