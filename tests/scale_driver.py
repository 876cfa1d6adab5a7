r"""Runs the distillation job once per mesh in one process, for tests/test_scale.py.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.scale_driver \
      --meshes=8x1x1,2x2x2 --workdir=ROOT --config=configs/distill.py:tiny ...

Takes launch.run's flags; `--meshes` lists data x fsdp x tensor splits and each run writes
`ROOT/<split>/` (metrics.jsonl, lora/). One process for all splits of a device count saves the
imports and JAX start-up of a subprocess per split.
"""

from absl import app, flags

import launch.run  # noqa: F401  (defines --config, --workdir and the multi-process flags)

flags.DEFINE_list("meshes", ["8x1x1"], "data x fsdp x tensor splits, e.g. 2x2x2,1x4x2.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from rd import train  # pylint: disable=import-outside-toplevel
  for split in FLAGS.meshes:
    data, fsdp, tensor = (int(s) for s in split.split("x"))
    c = FLAGS.config.copy_and_resolve_references()
    c.unlock()
    c.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
    result = train.train(c, f"{FLAGS.workdir}/{split}")
    if not result.after:
      raise SystemExit(f"{split}: training did not finish")


if __name__ == "__main__":
  app.run(main)
