r"""Benchmarks that print a table. Medians over several runs; peers alternate with rd in one run.

  python -m launch.bench --workload=sample            # rd only
  python -m launch.bench --workload=sample --vs_torch # beside transformers' generate (test extra)

Workload `sample`: Gemma 3 270M (fp32 on CPU), batch 8, 64-token prompts, 32 new tokens, greedy,
no early stop, so both sides do exactly the same work.
"""

import statistics
import time

import numpy as np
from absl import app, flags

from rd.metrics import format_table

FLAGS = flags.FLAGS
flags.DEFINE_enum("workload", "sample", ["sample"], "What to measure.")
flags.DEFINE_string("model", "gemma3-270m", "HF directory, .gguf file, or 'gemma3-270m'.")
flags.DEFINE_integer("runs", 5, "Timed runs per implementation (after one warm-up).")
flags.DEFINE_bool("vs_torch", False, "Also time the PyTorch + transformers peer.")
flags.DEFINE_integer("batch", 8, "Sequences per batch.")
flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per sequence.")
flags.DEFINE_integer("new_tokens", 32, "Generated tokens per sequence.")


def alternate(fns: dict, runs: int):
  """Warms each up, then interleaves timed runs so machine noise hits every side alike."""
  warm = {}
  for name, fn in fns.items():
    start = time.perf_counter()
    fn()
    warm[name] = time.perf_counter() - start
  times = {name: [] for name in fns}
  for _ in range(runs):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return warm, times


def _prompts(vocab, batch, length, bos):
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, min(vocab, 30000), size=(batch, length))
  ids[:, 0] = bos
  return ids


def bench_sample():
  from rd.generate import generate
  from rd.weights.load import load_model
  from rd.embedded import resolve_model_path

  base = load_model(FLAGS.model)
  spec = base.spec
  prompts = _prompts(spec.vocab_size, FLAGS.batch, FLAGS.prompt_len, spec.bos_token_id or 2)
  fns = {"rd (jax)": lambda: generate(base, None, prompts.tolist(), max_new_tokens=FLAGS.new_tokens,
                                      eos_ids=(), bucket=FLAGS.prompt_len).tokens}
  if FLAGS.vs_torch:
    fns["transformers (torch)"] = _torch_generate(resolve_model_path(FLAGS.model), prompts)
  warm, times = alternate(fns, FLAGS.runs)
  tokens = FLAGS.batch * FLAGS.new_tokens
  medians = {name: statistics.median(t) for name, t in times.items()}
  rows = [[name, f"{tokens / medians[name]:.1f}", f"{medians[name]:.3f}",
           f"{min(t):.3f}-{max(t):.3f}", f"{warm[name]:.1f}",
           f"{medians[name] / medians['rd (jax)']:.2f}x"] for name, t in times.items()]
  print(f"\nsample: batch {FLAGS.batch}, prompt {FLAGS.prompt_len}, {FLAGS.new_tokens} new tokens, "
        f"{FLAGS.runs} runs, medians")
  print(format_table(rows, ["impl", "tokens/s", "s/run", "range", "warm-up s", "time vs rd"]))


def _torch_generate(path, prompts):
  import os
  os.environ["HF_HUB_OFFLINE"] = "1"
  import torch
  import transformers

  path = str(path)
  if path.endswith(".gguf"):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32)
  else:
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
  model.eval()
  ids = torch.tensor(prompts)
  mask = torch.ones_like(ids)

  def run():
    with torch.no_grad():
      return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=FLAGS.new_tokens,
                            min_new_tokens=FLAGS.new_tokens, do_sample=False)
  return run


def main(argv):
  del argv
  {"sample": bench_sample}[FLAGS.workload]()


if __name__ == "__main__":
  app.run(main)
