r"""Generic context distillation from a JSONL file of {context, query, response} examples.

  python -m launch.run --config=configs/distill.py --workdir=/tmp/run \
      --config.data.train=train.jsonl --config.optim.lr=3e-4

The argument picks a size preset: `get_config("tiny")` for smoke tests.
"""

from rd.config import base_config


def get_config(arg: str = ""):
  c = base_config()
  if arg == "tiny":
    c.data.update(teacher_len=64, student_len=32, response_len=8, global_batch=4)
    c.train.update(steps=20, log_every=5, checkpoint_every=10)
  return c
