r"""The distillation job.

  python -m launch.distill --config=configs/distill.py:tiny --workdir=/tmp/run \
      --config.data.train=train.jsonl --config.optim.lr=3e-4

Resumes automatically from the newest checkpoint in --workdir. SIGTERM saves and exits 0.
Multi-process: set --coordinator_address/--num_processes/--process_id (launch/local_multiprocess.py
does, on one machine), or --distributed=auto on a Cloud TPU pod or under SLURM/Open MPI, where
`jax.distributed.initialize()` finds them itself (launch/tpu_pod.sh, launch/slurm.sbatch).
"""

import re
import sys

from absl import app, flags
from ml_collections import config_flags

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


def parse_flags(argv):
  """absl's parser, with an unknown `--config.x.y` override reported as one line, not a trace."""
  try:
    return FLAGS(argv)
  except flags.Error as e:  # e.g. a wrongly typed override
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
  try:
    config_lib.validate(FLAGS.config)
  except config_lib.ConfigError as e:
    sys.exit(f"error: {e}")
  import jax
  if FLAGS.distributed == "auto":
    jax.distributed.initialize()
  elif FLAGS.num_processes and FLAGS.num_processes > 1:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  from rd import train
  result = train.train(FLAGS.config, FLAGS.workdir)
  sys.exit(0 if result.stopped_early or result.after else 1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
