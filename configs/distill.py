r"""Generic context distillation from a JSONL file of {context, query, response} examples.

  python -m launch.run --config=configs/distill.py --workdir=/tmp/run \
      --config.data.train=train.jsonl --config.optim.lr=3e-4

The argument picks a size preset: `get_config("tiny")` for smoke tests.
"""

from rd.config import base_config


def get_config(arg: str = ""):
  c = base_config()
  if arg == "tiny":  # tests' random tasks (tests/fixtures.py) in the tiny tokenizer's tokens
    c.data.update(teacher_len=96, student_len=48, response_len=16, global_batch=4)
    c.train.update(steps=20, log_every=5, checkpoint_every=10)
  elif arg:
    raise ValueError(f"unknown preset {arg!r}; use '' or 'tiny'")
  return c
