"""The distillation step on hand-built batches: ensembles, packing, teacher LoRA, guards."""

import functools
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rd import distill, lora as lora_lib
from rd.data import Buckets, Example, Featurizer, Template, collate, pack_batch
from rd.models import apply, lm_logits
from tests.test_data_helpers import random_text, tiny_tokenizer
from tests.tiny import CONFIGS
from rd.models import Decoder, from_hf_config
from flax import nnx

jax.config.update("jax_default_matmul_precision", "highest")
BUCKETS = Buckets.fixed(48, 24, 6)
TEMPLATE = Template(teacher="{context}\n{query}", student="{query}")
CFG = distill.LossConfig(chunk_size=8)


@pytest.fixture(scope="module")
def model():
  cfg = {**CONFIGS["gemma3"], "vocab_size": len(tiny_tokenizer())}
  return jax.tree.map(lambda w: w * 4, Decoder(from_hf_config(cfg), rngs=nnx.Rngs(0)))


def _batch(n=4, k=0, seed=0):
  rng = random.Random(seed)
  examples = [Example(context=random_text(rng, 3, 6), query=random_text(rng, 2, 4),
                      response=random_text(rng, 2, 3),
                      contexts=tuple(random_text(rng, 3, 6) for _ in range(k)))
              for _ in range(n)]
  featurize = Featurizer(tiny_tokenizer(), TEMPLATE, BUCKETS)
  batch = collate([featurize(e, i) for i, e in enumerate(examples)], BUCKETS)
  batch.pop("example_index")
  return batch


def _kl(model, batch, teacher_lora=None, student_lora=None, cfg=CFG):
  s, c = distill.loss_terms(model, student_lora, teacher_lora, batch, cfg)["kl"]
  return float(s / c)


def test_ensemble_teacher_averages_the_k_context_probabilities(model):
  batch = _batch(k=3)
  mask = batch["row_mask"].reshape(-1).astype(bool)
  probs = []
  for j in range(3):  # each context on its own, then average the probabilities by hand
    h = apply(model, None, batch["teacher_tokens"][:, j], batch["teacher_positions"][:, j],
              batch["teacher_segment_ids"][:, j]).hidden
    rows = distill.gather_rows(h, batch["teacher_rows"][:, j])
    probs.append(jax.nn.softmax(lm_logits(model, rows)))
  teacher = jnp.mean(jnp.stack(probs), 0)
  h = apply(model, None, batch["student_tokens"], batch["student_positions"],
            batch["student_segment_ids"]).hidden
  student = jax.nn.log_softmax(lm_logits(model, distill.gather_rows(h, batch["student_rows"])))
  per_row = jnp.sum(teacher * (jnp.log(teacher) - student), -1)
  expected = float(per_row[mask].mean())
  assert expected > 0.01
  assert _kl(model, batch) == pytest.approx(expected, rel=1e-5)


def test_packed_students_give_the_same_loss(model):
  batch = _batch(n=6)
  packed = pack_batch(batch, num_rows=3, length=48)
  assert packed["student_tokens"].shape == (3, 48)
  assert _kl(model, packed) == pytest.approx(_kl(model, batch), rel=1e-5)


def test_teacher_lora_equal_to_student_lora_on_the_same_input_gives_zero(model):
  batch = _batch()
  same = dict(batch, teacher_tokens=batch["student_tokens"],
              teacher_positions=batch["student_positions"],
              teacher_segment_ids=batch["student_segment_ids"],
              teacher_rows=batch["student_rows"])
  trained = lora_lib.init(model.spec, lora_lib.LoraConfig(rank=2), jax.random.key(0))
  trained = lora_lib.Lora(jax.tree.map(lambda x: x + 0.1, trained.weights), scale=trained.scale)
  assert _kl(model, same, teacher_lora=trained, student_lora=trained) < 1e-6
  assert _kl(model, same, teacher_lora=trained, student_lora=None) > 1e-4


def test_hidden_alignment_term(model):
  batch = _batch()
  cfg = distill.LossConfig(kl_weight=0.0, hidden_weight=1.0, hidden_layers=(0, 2), chunk_size=8)
  s, c = distill.loss_terms(model, None, None, batch, cfg)["hidden"]
  assert float(s / c) > 0
  assert int(c) == 2 * int(batch["row_mask"].sum())


def test_nonfinite_loss_skips_the_update_and_counts(model):
  batch = _batch()
  optimizer = distill.make_optimizer(distill.OptimConfig(lr=1e-2))
  params = lora_lib.init(model.spec, lora_lib.LoraConfig(rank=2), jax.random.key(0))
  step = jax.jit(functools.partial(distill.train_step, optimizer=optimizer, loss_cfg=CFG))
  state = distill.init_state(params, optimizer, 0)
  state, metrics = step(state, model, batch)
  assert int(metrics["nonfinite"]) == 0 and float(metrics["grad_norm"]) > 0
  poisoned = state.replace(params=lora_lib.Lora(
      jax.tree.map(lambda x: x.at[0].set(jnp.nan), state.params.weights), scale=params.scale))
  after, metrics = step(poisoned, model, batch)
  assert not np.isfinite(float(metrics["loss"]))
  assert int(after.nonfinite) == 1 and int(after.skipped) == 1 and int(after.step) == 2
  for new, old in zip(jax.tree.leaves(after.params), jax.tree.leaves(poisoned.params)):
    np.testing.assert_array_equal(new, old)  # NaN == NaN here: nothing was updated


def test_top_k_teacher_from_the_config_is_the_renormalized_top_k_kl(model):
  """`LossConfig.teacher_topk`: k = V is the full forward KL; a small k is KL(p~ || q) with p~
  the teacher's top-k probabilities renormalized, q the student's, computed here by hand over
  the full vocabulary."""
  batch = _batch()
  vocab = model.spec.vocab_size
  full = _kl(model, batch)
  assert _kl(model, batch, cfg=distill.LossConfig(chunk_size=8, teacher_topk=vocab)) == (
      pytest.approx(full, rel=1e-5))
  k = 3
  mask = batch["row_mask"].reshape(-1).astype(bool)

  def log_probs(side):
    h = apply(model, None, batch[f"{side}_tokens"], batch[f"{side}_positions"],
              batch[f"{side}_segment_ids"]).hidden
    return jax.nn.log_softmax(lm_logits(model, distill.gather_rows(h, batch[f"{side}_rows"])))

  p, q = np.asarray(log_probs("teacher"))[mask], np.asarray(log_probs("student"))[mask]
  top = np.argsort(-p, axis=-1)[:, :k]
  p_k = np.take_along_axis(p, top, -1)
  p_k = p_k - np.log(np.exp(p_k).sum(-1, keepdims=True))
  q_k = np.take_along_axis(q, top, -1)
  expected = float(np.mean(np.sum(np.exp(p_k) * (p_k - q_k), -1)))
  got = _kl(model, batch, cfg=distill.LossConfig(chunk_size=8, teacher_topk=k))
  assert got == pytest.approx(expected, rel=1e-4)
  assert got != pytest.approx(full, rel=1e-2)
