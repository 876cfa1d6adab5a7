"""Multi-digit addition with and without a scratch-pad (Snell et al.'s arithmetic task), and the
character-level tokenizer and tiny from-scratch model that learn it.

A problem is `"{a}+{b}="` with 1-8 digit operands (each length drawn uniformly). Answers are
written least-significant digit first ("345+78=" -> "324", i.e. 423 reversed), the format in
which a small transformer trained from scratch learns addition (Lee et al. 2023, "Teaching
arithmetic to small transformers"); it is the same for every system compared.

How operands are written (`Format`) decides how hard a direct answer is; the scratch-pad copes
with all three:
* "plain" ("345+78="): answer digit i needs the i-th digit from each operand's right end, at a
  distance that changes with the operand's length. A 0.8M-parameter model trained from scratch
  on direct answers was at 6.6% exact answers after 3,000 steps of 64 problems.
* "padded" ("00000345+00000078="): every column at a fixed position, but the answer runs the
  other way (digit i reads position 8 - i). The same model trained from scratch reached 100%
  in 1,000 steps; a rank-16 LoRA distilled into a scratch-pad model of that size was still at
  1.4 nats a token after 3,300 steps of 32 problems.
* "reversed" ("54300000+87000000=", each operand zero-padded and written least-significant
  digit first, as the answer is): answer digit i reads the operands' digit i at a constant
  distance, and its carry is given away by the previous answer digit.
(2 CPU cores; issue 5's notes.)

The scratch-pad works through the columns from the right, one `xyzs,` step each (the column's
digits x and y, then zs: x + y + the carry from the previous column, as two digits), then `;`
and the answer (the s digits in order, and a final carry):

  345+78=  ->  5813,4712,3004,;324
"""

from __future__ import annotations

import dataclasses
import random
from rd.data.examples import Example

MAX_DIGITS = 8
SCRATCH_END = ";"  # separates the scratch-pad from the answer
ALPHABET = "0123456789+=,;"
SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")


def problems(rng: random.Random, n: int, max_digits: int = MAX_DIGITS,
             exclude: set[tuple[int, int]] | frozenset = frozenset()) -> list[tuple[int, int]]:
  """`n` distinct (a, b), each operand's length uniform in 1..max_digits, none in `exclude`."""
  seen, out = set(exclude), []
  while len(out) < n:
    a, b = (rng.randrange(10 ** (d - 1) if d > 1 else 0, 10 ** d)
            for d in (rng.randint(1, max_digits), rng.randint(1, max_digits)))
    if (a, b) not in seen:
      seen.add((a, b))
      out.append((a, b))
  return out


@dataclasses.dataclass(frozen=True)
class Format:
  """How a problem's operands are written: zero-padded to `width` digits (0: as they are),
  least-significant digit first (`reverse`) or not."""
  width: int = 0
  reverse: bool = False

  def operand(self, n: int) -> str:
    digits = f"{n:0{self.width}d}" if self.width else str(n)
    return digits[::-1] if self.reverse else digits


FORMATS = ("plain", "padded", "reversed")


def format_named(name: str, max_digits: int = MAX_DIGITS) -> Format:
  """One of `FORMATS`; padding is to `max_digits`."""
  return {"plain": Format(), "padded": Format(max_digits),
          "reversed": Format(max_digits, reverse=True)}[name]


def query(a: int, b: int, fmt: Format = Format()) -> str:
  return f"{fmt.operand(a)}+{fmt.operand(b)}="


def answer(a: int, b: int) -> str:
  """The sum, least-significant digit first."""
  return str(a + b)[::-1]


def scratch_pad(a: int, b: int, fmt: Format = Format()) -> str:
  """One `xyzs,` step per column of the problem (padding included), right to left, then `;`
  (the answer is not included)."""
  xs, ys = str(a)[::-1], str(b)[::-1]
  carry, steps = 0, []
  for i in range(max(len(xs), len(ys), fmt.width)):
    x = int(xs[i]) if i < len(xs) else 0
    y = int(ys[i]) if i < len(ys) else 0
    total = x + y + carry
    steps.append(f"{x}{y}{total:02d},")
    carry = total // 10
  return "".join(steps) + SCRATCH_END


def parse_answer(completion: str, *, scratch: bool) -> str:
  """The answer in a completion: after the scratch-pad's `;` (scratch=True), else the whole
  completion (a direct answer). A scratch-pad completion without `;` has no answer."""
  if scratch:
    return completion.rsplit(SCRATCH_END, 1)[1].strip() if SCRATCH_END in completion else ""
  return completion.strip()


def scratch_example(a: int, b: int, fmt: Format = Format()) -> Example:
  """Training data of the scratch-pad model: prompt -> scratch-pad and answer."""
  return Example(context="", query=query(a, b, fmt),
                 response=scratch_pad(a, b, fmt) + answer(a, b),
                 meta={"answer": answer(a, b)})


def direct_example(a: int, b: int, fmt: Format = Format()) -> Example:
  """Training data of a direct answerer: prompt -> answer."""
  return Example(context="", query=query(a, b, fmt), response=answer(a, b),
                 meta={"answer": answer(a, b)})


def distill_example(a: int, b: int, teacher_completion: str,
                    fmt: Format = Format()) -> Example | None:
  """Context distillation of the scratch-pad: the teacher sees the problem and its own
  scratch-pad (the context, after the query), the student only the problem; both are scored on
  the teacher's own answer (no gold label is used). None if the teacher gave no answer."""
  if SCRATCH_END not in teacher_completion:
    return None
  pad, teacher_answer = teacher_completion.rsplit(SCRATCH_END, 1)
  if not teacher_answer.strip():
    return None
  return Example(context=pad + SCRATCH_END, query=query(a, b, fmt),
                 response=teacher_answer.strip(), meta={"answer": answer(a, b)})


# ----------------------------------------------------------------------------------------------
# Tokenizer and model


def char_tokenizer():
  """One token per character of `ALPHABET`, plus <pad>=0, <bos>=1, <eos>=2, <unk>=3; encode()
  adds <bos> first, as the engine's sequences expect."""
  from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
  from transformers import PreTrainedTokenizerFast
  vocab = {t: i for i, t in enumerate(SPECIAL + tuple(ALPHABET))}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
  tok.decoder = decoders.Fuse()
  tok.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                     special_tokens=[("<bos>", vocab["<bos>"])])
  return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                 pad_token="<pad>", unk_token="<unk>")


def model_config(*, hidden: int = 128, layers: int = 4, heads: int = 4,
                 max_positions: int = 128) -> dict:
  """A small Llama-family config (Hugging Face `config.json` fields) over the char vocabulary."""
  return dict(model_type="llama", vocab_size=len(SPECIAL) + len(ALPHABET), hidden_size=hidden,
              intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
              num_key_value_heads=heads, head_dim=hidden // heads, rms_norm_eps=1e-5,
              rope_theta=10000.0, max_position_embeddings=max_positions,
              tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
