r"""The prompt-distillation experiment: distill documents into a LoRA, compare with SFT and RAG.

  python -m launch.prompt_distill --config=configs/prompt_distill.py --workdir=/tmp/pd
  python -m launch.prompt_distill --config=configs/prompt_distill.py --workdir=/tmp/pd \
      --config.questions.source=generated --config.train.steps=200

Writes <workdir>/results.json, results.png, predictions.jsonl, train_pairs.jsonl, and the two
trainings' workdirs (<workdir>/distill, <workdir>/sft: metrics, checkpoints, lora/). Running the
same command again resumes finished or interrupted trainings from their checkpoints.
"""

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Results, both trainings and their LoRAs go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rd.methods.prompt_distill import job as prompt_distill  # after flag parsing: importing jax costs seconds
  config_cli.validate_or_exit(prompt_distill.validate, FLAGS.config)
  prompt_distill.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
