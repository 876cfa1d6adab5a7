"""The plain distillation job: a config's data (`data.train`, any source) into one LoRA.

`rd.train.train` in the workdir itself: checkpoints, metrics, the LoRA in `<workdir>/lora`,
and the eval losses before and after in `results.json`.
"""

from rd.config import validate  # noqa: F401  (the engine's checks are this job's)


def run(job):
  result = job.train(job.config, "")
  return job.finish({"eval_losses": {"before": result.before, "after": result.after}})
