r"""TAGI: per-task LoRAs, the hypernetwork's two stages, and seen/unseen task evaluation.

  python -m launch.tagi --config=configs/tagi.py --workdir=/tmp/tagi
  python -m launch.tagi --config=configs/tagi.py:smoke --workdir=/tmp/tagi-smoke \
      --config.stage2.teacher=context

Writes <workdir>/adapters/<task>/, stage1/, stage2/ (metrics, checkpoints, hypernet/),
results.json and predictions.jsonl. Running the same command again resumes.
"""

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Adapters, both stages and the results go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rd import tagi_experiment  # after flag parsing: importing jax costs seconds
  config_cli.validate_or_exit(tagi_experiment.validate, FLAGS.config)
  tagi_experiment.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
