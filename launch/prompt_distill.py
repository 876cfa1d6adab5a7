r"""The prompt-distillation experiment: distill documents into a LoRA, compare with SFT and RAG.

  python -m launch.prompt_distill --config=configs/prompt_distill.py --workdir=/tmp/pd
  python -m launch.prompt_distill --config=configs/prompt_distill.py --workdir=/tmp/pd \
      --config.questions.source=generated --config.train.steps=200

Writes <workdir>/results.json, results.png, predictions.jsonl, train_pairs.jsonl, and the two
trainings' workdirs (<workdir>/distill, <workdir>/sft: metrics, checkpoints, lora/). Running the
same command again resumes finished or interrupted trainings from their checkpoints.
"""

import re
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Results, both trainings and their LoRAs go here.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
  """absl's parser, with a bad `--config.x.y` override reported as one line, not a trace
  (as in launch/distill.py)."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}")
  except (AttributeError, KeyError) as e:
    match = re.search(r'instead of "(\w+)"', str(e)) or re.search(r"(\w+)", str(e))
    key = match[1] if match else "?"
    arg = next((a for a in argv if re.search(rf"\.{key}(=|\.|$)", a)), key)
    hint = re.search(r"Did you mean [^?]*\?", str(e))
    sys.exit(f"error: {arg}: config has no field {key!r}" + (f"; {hint[0]}" if hint else ""))


def main(argv):
  del argv
  from rd import config as config_lib  # after flag parsing: importing jax costs seconds
  from rd import prompt_distill
  try:
    prompt_distill.validate(FLAGS.config)
  except config_lib.ConfigError as e:
    sys.exit(f"error: {e}")
  prompt_distill.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
