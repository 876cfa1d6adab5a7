"""Batched sampling with a KV cache: one jitted prefill + `lax.while_loop` decode per call.

Prompts are left-padded to a length bucket, so every row's last prompt token sits in the same
slot and decoding writes one slot per step for the whole batch. Padding slots have segment id 0
and are never attended to. Shapes depend only on (batch, prompt bucket, max_new_tokens) and the
sampling settings, so calls in the same bucket reuse one compilation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rd.data.tokenize import round_up
from rd.lora import Lora
from rd.models.decoder import Decoder, apply, init_cache, lm_logits


@dataclasses.dataclass(frozen=True)
class Sampling:
  temperature: float = 0.0  # 0 means greedy
  top_k: int = 0  # 0 means no top-k filter
  top_p: float = 1.0  # 1 means no nucleus filter

  def __post_init__(self):
    if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
      raise ValueError(f"invalid sampling settings {self}: need temperature >= 0, top_k >= 0, "
                       "0 < top_p <= 1")


class Generated(NamedTuple):
  tokens: np.ndarray  # [B, max_new_tokens] int32, `pad_id` after a row's EOS
  logprobs: np.ndarray  # [B, max_new_tokens] log p(token) under the model at temperature 1
  lengths: np.ndarray  # [B] generated tokens per row, EOS included


def _filter_and_sample(logits: jax.Array, key: jax.Array, s: Sampling) -> jax.Array:
  """Samples token ids [B] from fp32 logits [B, V] after temperature, top-k and top-p."""
  if s.temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / s.temperature
  # Candidates: the top-k (or the whole vocabulary, sorted, when only top-p is asked for).
  k = s.top_k or (logits.shape[-1] if s.top_p < 1 else 0)
  if k == 0:
    return jax.random.categorical(key, logits).astype(jnp.int32)
  values, ids = jax.lax.top_k(logits, k)
  if s.top_p < 1:  # keep the smallest prefix whose probability reaches top_p
    probs = jax.nn.softmax(values, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    values = jnp.where(before < s.top_p, values, -jnp.inf)
  choice = jax.random.categorical(key, values)
  return jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("max_new_tokens", "sampling", "eos_ids", "pad_id"))
def _generate(base: Decoder, lora: Lora | None, tokens, positions, segment_ids, key, *,
              max_new_tokens: int, sampling: Sampling, eos_ids: tuple[int, ...], pad_id: int):
  b, prompt_len = tokens.shape
  cache = init_cache(base.spec, b, prompt_len + max_new_tokens, base.embed[...].dtype)
  out = apply(base, lora, tokens, positions, segment_ids, cache=cache)
  eos = jnp.asarray(eos_ids or (-1,), jnp.int32)

  def step(state):
    cache, logits, pos, i, done, key, toks, lps = state
    key, sub = jax.random.split(key)
    tok = _filter_and_sample(logits, sub, sampling)
    lp = jnp.take_along_axis(jax.nn.log_softmax(logits), tok[:, None], axis=-1)[:, 0]
    tok = jnp.where(done, pad_id, tok)
    toks, lps = toks.at[:, i].set(tok), lps.at[:, i].set(jnp.where(done, 0.0, lp))
    done = done | jnp.isin(tok, eos)
    o = apply(base, lora, tok[:, None], pos[:, None], jnp.ones((b, 1), jnp.int32), cache=cache)
    return o.cache, lm_logits(base, o.hidden[:, 0]), pos + 1, i + 1, done, key, toks, lps

  def keep_going(state):
    return (state[3] < max_new_tokens) & ~jnp.all(state[4])

  init = (out.cache, lm_logits(base, out.hidden[:, -1]), positions[:, -1] + 1, 0,
          jnp.zeros((b,), bool), key, jnp.full((b, max_new_tokens), pad_id, jnp.int32),
          jnp.zeros((b, max_new_tokens), jnp.float32))
  final = jax.lax.while_loop(keep_going, step, init)
  return final[6], final[7]


def prompt_bucket(tokenizer, prompts: Sequence[str], multiple: int = 8) -> int:
  """The longest of `prompts` in tokens, rounded up: one prompt shape for all of them, so
  their generation compiles once."""
  return round_up(max(len(tokenizer.encode(p)) for p in prompts), multiple)


def left_pad(prompts: Sequence[Sequence[int]], bucket: int, pad_id: int):
  """(tokens, positions, segment_ids) [B, P], P the prompt length rounded up to `bucket`."""
  if not prompts or any(len(p) == 0 for p in prompts):
    raise ValueError("every prompt needs at least one token")
  longest = max(len(p) for p in prompts)
  width = round_up(longest, bucket)
  tokens = np.full((len(prompts), width), pad_id, np.int32)
  positions = np.zeros((len(prompts), width), np.int32)
  segments = np.zeros((len(prompts), width), np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, width - len(prompt):] = prompt
    positions[row, width - len(prompt):] = np.arange(len(prompt))
    segments[row, width - len(prompt):] = 1
  return tokens, positions, segments


def generate(base: Decoder, lora: Lora | None, prompts: Sequence[Sequence[int]], *,
             max_new_tokens: int, sampling: Sampling = Sampling(),
             eos_ids: Sequence[int] | None = None, pad_id: int = 0, seed: int = 0,
             bucket: int = 64) -> Generated:
  """Continues each prompt (a list of token ids, BOS included) by up to `max_new_tokens`."""
  eos_ids = tuple(base.spec.eos_token_ids if eos_ids is None else eos_ids)
  tokens, positions, segments = left_pad(prompts, bucket, pad_id)
  toks, lps = _generate(base, lora, tokens, positions, segments, jax.random.key(seed),
                        max_new_tokens=max_new_tokens, sampling=sampling, eos_ids=eos_ids,
                        pad_id=pad_id)
  toks, lps = np.asarray(toks), np.asarray(lps)
  lengths = np.full(len(prompts), max_new_tokens, np.int32)
  for row in range(len(prompts)):
    hits = np.flatnonzero(np.isin(toks[row], eos_ids))
    if hits.size:
      lengths[row] = hits[0] + 1
  return Generated(toks, lps, lengths)


def generate_text(base: Decoder, lora: Lora | None, tokenizer, prompts: Sequence[str], *,
                  max_new_tokens: int, batch_size: int = 8, **kwargs) -> list[str]:
  """Text in, completions out (EOS stripped), in fixed-size batches to keep one compilation."""
  ids = [tokenizer.encode(p) for p in prompts]
  pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
  eos = kwargs.pop("eos_ids", None) or [tokenizer.eos_token_id]
  completions = []
  for start in range(0, len(ids), batch_size):
    chunk = ids[start:start + batch_size]
    filler = [chunk[-1]] * (batch_size - len(chunk))  # pad the last batch to the same shape
    out = generate(base, lora, chunk + filler, max_new_tokens=max_new_tokens, eos_ids=eos,
                   pad_id=pad, **kwargs)
    for row in range(len(chunk)):
      n = out.lengths[row] - int(out.tokens[row, out.lengths[row] - 1] in eos)
      completions.append(tokenizer.decode(out.tokens[row, :n]))
  return completions
