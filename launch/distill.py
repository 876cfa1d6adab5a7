r"""The distillation job.

  python -m launch.distill --config=configs/distill.py:tiny --workdir=/tmp/run \
      --config.data.train=train.jsonl --config.optim.lr=3e-4

Resumes automatically from the newest checkpoint in --workdir. SIGTERM saves and exits 0.
Multi-process: set --coordinator_address/--num_processes/--process_id (launch/local_multiprocess.py
does, on one machine), or --distributed=auto on a Cloud TPU pod or under SLURM/Open MPI, where
`jax.distributed.initialize()` finds them itself (launch/tpu_pod.sh, launch/slurm.sbatch).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and the trained LoRA go here.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
flags.DEFINE_enum("distributed", "off", ["off", "auto"],
                  "auto: jax.distributed.initialize() with no arguments, which detects Cloud TPU "
                  "pods, SLURM (one task per GPU) and Open MPI.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rd import config as config_lib  # after flag parsing: importing jax costs seconds
  config_cli.validate_or_exit(config_lib.validate, FLAGS.config)
  import jax
  if FLAGS.distributed == "auto":
    jax.distributed.initialize()
  elif FLAGS.num_processes and FLAGS.num_processes > 1:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  from rd import train
  result = train.train(FLAGS.config, FLAGS.workdir)
  sys.exit(0 if result.stopped_early or result.after else 1)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
