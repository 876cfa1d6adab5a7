"""A tiny local tokenizer and random examples shared by the data tests (no network)."""

import functools
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rd.data.examples import Example

CORPUS = [
    "the cat sat on the mat", "Question: what is two plus two? Answer: four",
    "Rule: always answer in French.", "The quick brown fox jumps over the lazy dog.",
    "Context distillation moves a prompt into the weights.", "{braces} and 123 numbers",
]
WORDS = "the cat sat on mat rule answer question dog fox quick brown lazy four two {x}".split()
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
                 "</{{ m['role'] }}>{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


@functools.lru_cache(maxsize=None)
def tiny_tokenizer(chat: bool = False) -> PreTrainedTokenizerFast:
  """Byte-level BPE (any text encodes) with <pad>=0, <bos>=1, <eos>=2."""
  tok = Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(CORPUS, trainer)
  hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                               pad_token="<pad>", unk_token="<unk>")
  if chat:
    hf.chat_template = CHAT_TEMPLATE
  return hf


def random_text(rng: random.Random, lo: int, hi: int) -> str:
  return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def random_examples(n: int, seed: int = 0, k: int = 0) -> list[Example]:
  """Examples of varied lengths; K-context ensembles when k > 0."""
  rng = random.Random(seed)
  out = []
  for i in range(n):
    contexts = tuple(random_text(rng, 1, 12) for _ in range(k))
    out.append(Example(context=random_text(rng, 0, 15), query=random_text(rng, 1, 8),
                       response=" " + random_text(rng, 1, 10), meta={"i": i},
                       contexts=contexts))
  return out


def test_tiny_tokenizer_has_special_ids():
  tok = tiny_tokenizer()
  assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
  assert tok.encode("the cat", add_special_tokens=False)
