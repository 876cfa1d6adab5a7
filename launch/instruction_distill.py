r"""The instruction-internalization experiment: one LoRA per suite task, against SFT baselines.

  python -m launch.instruction_distill --config=configs/instruction_distill.py --workdir=/tmp/id
  python -m launch.instruction_distill --config=configs/instruction_distill.py:tiny \
      --workdir=/tmp/id_tiny --config.model.path=/path/to/tiny_model

Writes <workdir>/results.json, predictions.jsonl and, per task, <workdir>/<task>/ with its data
(train_gold.jsonl, train_teacher.jsonl, test.jsonl) and the three trainings' workdirs (distill,
sft_teacher, sft_gold: metrics, checkpoints, lora/). Running the same command again resumes
finished or interrupted trainings from their checkpoints. `--compilation_cache=DIR` keeps
compiled programs on disk: every task's trainings compile the same programs (the two SFTs too),
so each is compiled once (and once across runs).
"""

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Results and every task's trainings go here.")
flags.DEFINE_string("compilation_cache", "", "JAX persistent compilation cache directory.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rd import instruction_distill  # after flag parsing: importing jax costs seconds
  config_cli.validate_or_exit(instruction_distill.validate, FLAGS.config)
  if FLAGS.compilation_cache:
    import jax  # pylint: disable=import-outside-toplevel
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache)
  instruction_distill.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
