"""Where a job's numbers go: JSONL (for people and scripts), TensorBoard scalars, the terminal."""

from __future__ import annotations

import json
import os
import time

import jax


class MetricsWriter:
  """Appends {"step", "time", **metrics} lines to `<workdir>/metrics.jsonl` and TensorBoard.

  Only process 0 writes; appending keeps the history of a resumed run in one file.
  """

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
    if not self.enabled:
      return
    named = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), "time": time.time(), **named}) + "\n")
    if self._tb is not None:
      for name, value in named.items():
        self._tb.add_scalar(name, value, int(step))
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def format_table(rows: list[list[str]], columns: list[str]) -> str:
  """A right-aligned text table."""
  widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
  line = lambda cells: " | ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
  return "\n".join([line(columns), "-+-".join("-" * w for w in widths), *map(line, rows)])
