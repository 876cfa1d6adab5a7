r"""The composed-distillation experiment: in-window prompting against three composed forms.

  python -m launch.composed_distill --config=configs/composed_distill.py --workdir=/tmp/cd
  python -m launch.composed_distill --config=configs/composed_distill.py:tiny --workdir=/tmp/t \
      --config.model.path=/path/to/tiny/model

Writes <workdir>/results.json, predictions.jsonl, the task's JSONL files, and one workdir per
training (simultaneous/, sequential/round_r/, recursive/round_r/: metrics, checkpoints, lora/).
Running the same command again loads finished trainings and resumes interrupted ones.
`--compilation_cache=DIR` keeps compiled programs on disk: the rounds of a form compile the
same programs, so each is compiled once (and once across runs).
"""

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Results and every training's workdir go here.")
flags.DEFINE_string("compilation_cache", "", "JAX persistent compilation cache directory.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rd import composed_distill  # after flag parsing: importing jax costs seconds
  config_cli.validate_or_exit(composed_distill.validate, FLAGS.config)
  if FLAGS.compilation_cache:
    import jax  # pylint: disable=import-outside-toplevel
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache)
  composed_distill.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
