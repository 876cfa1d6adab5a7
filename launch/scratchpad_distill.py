r"""Scratch-pad internalization on 1-8 digit addition: a model trained from scratch to add with a
scratch-pad is distilled into the same model answering directly (rd/methods/context_distill/scratchpad.py).

  python -m launch.scratchpad_distill --config=configs/scratchpad_distill.py --workdir=/tmp/sp

Writes <workdir>/results.json, predictions.jsonl, the problem files, the teacher's scratch-pads
(distill.jsonl; distill_pairs.json marks them complete), and one workdir per training (init/,
scratchpad/, distill/, direct/, scratchpad_then_direct/). Running the same command again
resumes finished or interrupted trainings from their checkpoints and reuses the scratch-pads.
"""

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Results and every training's workdir go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rd.methods.context_distill import scratchpad as scratchpad_distill  # after flag parsing: importing jax costs seconds
  config_cli.validate_or_exit(scratchpad_distill.validate, FLAGS.config)
  scratchpad_distill.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
