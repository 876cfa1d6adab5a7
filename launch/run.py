r"""Runs any rd job: the config names its method (`config.job`), the flags are the same for all.

  python -m launch.run --config=configs/prompt_distill.py --workdir=/tmp/pd
  python -m launch.run --config=configs/distill.py:tiny --workdir=/tmp/run \
      --config.data.train=train.jsonl --config.optim.lr=3e-4

The config is validated (one line naming the field, exit 1) before anything loads. Rerunning
the same command resumes: finished phases are read back, trainings continue from their newest
checkpoint. SIGTERM saves a checkpoint and exits 0. Multi-process: --coordinator_address/
--num_processes/--process_id (launch/local_multiprocess.py sets them on one machine), or
--distributed=auto on a Cloud TPU pod or under SLURM / Open MPI, where
`jax.distributed.initialize()` finds them itself (launch/tpu_pod.sh, launch/slurm.sbatch).
"""

import importlib
import sys

from absl import app, flags
from ml_collections import config_flags

from launch import config_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Results, checkpoints and trained weights go here.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
flags.DEFINE_enum("distributed", "off", ["off", "auto"],
                  "auto: jax.distributed.initialize() with no arguments, which detects Cloud TPU "
                  "pods, SLURM (one task per GPU) and Open MPI.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  c = FLAGS.config
  if "job" not in c:
    sys.exit("error: config.job: the config names no job; set job='rd.methods.distill' (or "
             "another method's module)")
  method = importlib.import_module(c.job)
  config_cli.validate_or_exit(method.validate, c)
  from rd import job  # pylint: disable=import-outside-toplevel
  sys.exit(job.main(method, c, FLAGS.workdir, mode=FLAGS.distributed,
                    coordinator_address=FLAGS.coordinator_address,
                    num_processes=FLAGS.num_processes, process_id=FLAGS.process_id))


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
