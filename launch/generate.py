r"""Runs prompts through a model and prints (or writes) the completions.

  python -m launch.generate --prompt="The capital of France is" --max_new_tokens=16
  python -m launch.generate --model=/path/to/hf_dir --prompts_file=prompts.jsonl \
      --output=completions.jsonl --temperature=0.7 --top_p=0.9

`--model` is a Hugging Face safetensors directory, a .gguf file, or `gemma3-270m` (the embedded
default). A prompts file holds one prompt per line, as plain text or JSONL with a "prompt" field.
"""

import json
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "gemma3-270m", "HF directory, .gguf file, or 'gemma3-270m'.")
flags.DEFINE_multi_string("prompt", [], "A prompt; repeat the flag for several.")
flags.DEFINE_string("prompts_file", None, "Text file (one prompt per line) or JSONL with 'prompt'.")
flags.DEFINE_string("output", None, "Write {prompt, completion} JSONL here instead of printing.")
flags.DEFINE_integer("max_new_tokens", 32, "Tokens to generate per prompt at most.")
flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
flags.DEFINE_integer("top_k", 0, "0 = off.")
flags.DEFINE_float("top_p", 1.0, "1 = off.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_integer("batch_size", 8, "Prompts per batch (the last batch is padded).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype.")


def read_prompts(path):
  prompts = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      line = line.rstrip("\n")
      if not line.strip():
        continue
      if path.endswith(".jsonl"):
        record = json.loads(line)
        if "prompt" not in record:
          raise ValueError(f"{path}:{number}: JSONL prompts need a 'prompt' field")
        line = record["prompt"]
      prompts.append(line)
  return prompts


def main(argv):
  del argv
  prompts = list(FLAGS.prompt) + (read_prompts(FLAGS.prompts_file) if FLAGS.prompts_file else [])
  if not prompts:
    raise app.UsageError("give --prompt or --prompts_file")
  from rd import generate  # imported after flag parsing: jax start-up is not free
  from rd.generate import Sampling
  from rd.tokenizer import load_tokenizer
  from rd.weights.load import load_model
  sampling = Sampling(FLAGS.temperature, FLAGS.top_k, FLAGS.top_p)  # validates before loading
  start = time.perf_counter()
  base = load_model(FLAGS.model, dtype=FLAGS.dtype)
  tokenizer = load_tokenizer(FLAGS.model)
  print(f"loaded {FLAGS.model} in {time.perf_counter() - start:.1f}s")
  start = time.perf_counter()
  completions = generate.generate_text(
      base, None, tokenizer, prompts, max_new_tokens=FLAGS.max_new_tokens,
      batch_size=FLAGS.batch_size, sampling=sampling, seed=FLAGS.seed)
  print(f"generated {len(prompts)} completions in {time.perf_counter() - start:.1f}s")
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      for prompt, completion in zip(prompts, completions):
        f.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    print(f"wrote {FLAGS.output}")
    return
  for prompt, completion in zip(prompts, completions):
    print(f"\n>>> {prompt}\n{completion}")


if __name__ == "__main__":
  app.run(main)
