r"""The rule-distillation experiment: a rule into a LoRA, by training size, against SFT.

  python -m launch.rule_distill --config=configs/rule_distill.py --workdir=/tmp/rule
  python -m launch.rule_distill --config=configs/rule_distill.py --workdir=/tmp/rule \
      --config.rule.rules="('add_x',)" --config.rule.ks="(4, 16)"

Writes <workdir>/data (the rule tasks), <workdir>/<rule>/k<k>/<system>/ (one training each:
metrics, checkpoints, lora/, eval.json), <workdir>/results.json and predictions.jsonl. Running
the same command again reuses finished trainings and evaluations and resumes interrupted ones.
"""

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Data, every training and the results go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rd import rule_distill  # after flag parsing: importing jax costs seconds
  config_cli.validate_or_exit(rule_distill.validate, FLAGS.config)
  rule_distill.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
