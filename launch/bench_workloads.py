"""The standard distillation workloads of `launch/bench.py`: synthetic batches, rd's step, FLOPs.

Every example is `[bos] + context + query + response` for the teacher and `[bos] + query +
response` for the student, responses right-aligned, random token ids (speed does not depend on
them). W2's examples share their context in groups of `share`; rd runs each distinct context
once per batch (`rd.distill.teacher_outputs` with `prefix_tokens`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from rd import distill, lora as lora_lib, sharding, xla_cpu
from rd.data.tokenize import model_inputs


@dataclasses.dataclass(frozen=True)
class Workload:
  batch: int = 4
  teacher_len: int = 256  # context + query + response (+ BOS)
  student_len: int = 64  # query + response (+ BOS)
  response_len: int = 32
  share: int = 1  # consecutive examples sharing one context (W2: 8)
  rank: int = 16
  targets: tuple[str, ...] = ("q", "k", "v", "o")
  temperature: float = 1.0
  lr: float = 1e-4
  remat: str = "none"  # the student's layer remat policy (rd.models.decoder.REMAT_POLICIES)

  @property
  def context_len(self) -> int:
    return self.teacher_len - self.student_len


WORKLOADS = {
    "w1": Workload(),
    "w2": Workload(share=8),
    "w3": Workload(),  # W1's examples for several epochs, the teacher cached after the first
    # Accelerator scale: teacher sequences of 2048 tokens (for a 1B-class model in bf16).
    "long": Workload(batch=8, teacher_len=2048, student_len=512, response_len=128),
}

# Hugging Face configs of 1B-class models, for `random:NAME` (random weights: speed only).
RANDOM_MODELS = {
    "gemma3-1b": dict(  # Gemma 3 1B's shapes: 26 layers, 5 of 6 sliding
        model_type="gemma3_text", vocab_size=262_144, hidden_size=1152, intermediate_size=6912,
        num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        sliding_window=512, query_pre_attn_scalar=256, bos_token_id=2, eos_token_id=1,
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                     for i in range(26)]),
    "llama3-1b": dict(  # Llama 3.2 1B's shapes
        model_type="llama", vocab_size=128_256, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        rope_theta=500_000.0, tie_word_embeddings=True, bos_token_id=128_000,
        eos_token_id=128_001),
}


def workload(name: str, overrides: list[str]) -> Workload:
  """`WORKLOADS[name]` with `field=value` overrides (e.g. `batch=16`), each checked by name."""
  w = WORKLOADS[name]
  fields = {f.name for f in dataclasses.fields(Workload)}
  changes = {}
  for item in overrides:
    key, sep, value = item.partition("=")
    if not sep or key not in fields:
      raise ValueError(f"--override {item!r}: use field=value with a field of {sorted(fields)}")
    kind = type(getattr(w, key))
    changes[key] = tuple(value.split("+")) if kind is tuple else kind(value)
  return dataclasses.replace(w, **changes)


def random_model(name: str, dtype, mesh):
  """A `RANDOM_MODELS[name]` decoder with random weights, placed with rd's shardings."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from rd.models import Decoder, from_hf_config  # pylint: disable=import-outside-toplevel
  if name not in RANDOM_MODELS:
    raise ValueError(f"--model=random:{name}: unknown; use one of {sorted(RANDOM_MODELS)}")
  spec = from_hf_config(RANDOM_MODELS[name], source=f"random:{name}")
  return sharding.place_params(Decoder(spec, dtype=dtype, rngs=nnx.Rngs(0)), mesh)


def make_batches(w: Workload, num_examples: int, vocab: int, bos: int, *,
                 shared_prefix: bool, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """`num_examples // w.batch` batches in rd's layout (example_index included).

  With `shared_prefix`, the teacher sequences are the suffixes (query + response) and each
  batch carries its distinct contexts as `prefix_*` (one per group of `w.share` examples).
  """
  rng = np.random.default_rng(seed)
  low = min(1000, vocab // 2)  # ordinary tokens, clear of the special ones
  draw = lambda n: rng.integers(low, min(vocab, 30000), size=n).astype(np.int32)  # noqa: E731
  contexts = [draw(w.context_len) for _ in range(-(-num_examples // w.share))]
  r, ts = w.response_len, w.student_len
  batches = []
  for start in range(0, num_examples - w.batch + 1, w.batch):
    index = np.arange(start, start + w.batch)
    student = np.stack([np.concatenate([[bos], draw(ts - 1)]) for _ in index])
    group = index // w.share
    rows = np.arange(ts - r - 1, ts - 1)
    batch = {"student_tokens": student, "student_rows": _tile(rows, w.batch),
             "targets": student[:, ts - r:], "row_mask": np.ones((w.batch, r), np.int32),
             "example_index": index.astype(np.int32)}
    if shared_prefix:
      distinct, local = np.unique(group, return_inverse=True)
      prefix = np.stack([np.concatenate([[bos], contexts[g]]) for g in distinct])
      suffix = student[:, 1:]
      batch.update(prefix_tokens=prefix, prefix_index=local.astype(np.int32),
                   teacher_tokens=suffix,
                   teacher_positions=_tile(np.arange(ts - 1) + prefix.shape[1], w.batch),
                   teacher_rows=_tile(rows - 1, w.batch))
      batch.update(_positions_and_segments("prefix", prefix))
      batch["teacher_segment_ids"] = np.ones_like(suffix)
    else:
      teacher = np.stack([np.concatenate([[bos], contexts[g], s[1:]])
                          for g, s in zip(group, student)])
      batch.update(teacher_tokens=teacher,
                   teacher_rows=_tile(rows + w.context_len, w.batch))
      batch.update(_positions_and_segments("teacher", teacher))
    batch.update(_positions_and_segments("student", student))
    batches.append({k: np.ascontiguousarray(v, np.int32) for k, v in batch.items()})
  return batches


def _tile(row: np.ndarray, batch: int) -> np.ndarray:
  return np.broadcast_to(row, (batch, len(row))).copy()


def _positions_and_segments(side: str, tokens: np.ndarray) -> dict[str, np.ndarray]:
  return {f"{side}_positions": _tile(np.arange(tokens.shape[1]), len(tokens)),
          f"{side}_segment_ids": np.ones_like(tokens)}


class RdStep:
  """rd's jitted distillation step on one workload; `run(batch)` does one update."""

  def __init__(self, base, w: Workload, mesh):
    self.base, self.mesh = base, mesh
    optimizer = distill.make_optimizer(distill.OptimConfig(lr=w.lr, warmup_steps=0,
                                                           total_steps=10**6))
    loss_cfg = distill.LossConfig(temperature=w.temperature, remat=w.remat)
    lora = lora_lib.init(base.spec, lora_lib.LoraConfig(rank=w.rank, alpha=2.0 * w.rank,
                                                        targets=w.targets), jax.random.key(0))
    replicated = sharding.replicated(mesh)
    initial = jax.device_get(distill.init_state(lora, optimizer, 0))  # host copy: steps donate
    self.reset = lambda: setattr(self, "state", jax.device_put(initial, replicated))
    self.reset()
    self.step = jax.jit(functools.partial(distill.train_step, optimizer=optimizer,
                                          loss_cfg=loss_cfg),
                        donate_argnums=0, out_shardings=(replicated, replicated))
    teacher = jax.jit(distill.teacher_outputs)  # the base as an argument, not a constant
    self.teacher = lambda batch: teacher(base, None, batch)

  def run(self, batch: dict[str, np.ndarray]) -> float:
    self.state, metrics = self.step(self.state, self.base,
                                    sharding.shard_batch(model_inputs(batch), self.mesh))
    loss = float(metrics["loss"])  # waits for the step
    xla_cpu.release_heap_holes()  # as rd's training loops do
    return loss


def model_flops(spec, w: Workload, *, shared_prefix: bool = False, cached: bool = False) -> float:
  """Model FLOPs of one step: teacher forward (none when cached; contexts once per group when
  shared), student forward and backward. The frozen student weights get no weight gradient, so
  the student's backward costs one forward (activation gradients; LoRA's own are negligible);
  the vocabulary head runs on the response rows only (teacher: forward; student: forward and
  backward, both in the loss's one pass). Attention counts half the context on average (causal)."""
  head = 2 * spec.hidden_size * spec.vocab_size
  body = lambda n, t: n * t * (spec.flops_per_token(t // 2) - head)  # noqa: E731
  rows = w.batch * w.response_len
  student = 2 * body(w.batch, w.student_len) + 2 * rows * head
  if cached:
    return student + rows * head
  if shared_prefix:
    groups = max(1, w.batch // w.share)
    teacher = body(groups, w.context_len + 1) + body(w.batch, w.student_len - 1)
  else:
    teacher = body(w.batch, w.teacher_len)
  return student + teacher + rows * head
