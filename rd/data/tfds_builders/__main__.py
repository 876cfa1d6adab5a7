"""Build a dataset and (optionally) write its splits as JSONL to look at.

    python -m rd.data.tfds_builders rd_facts/small --to_jsonl /tmp/rd_facts
    python -m rd.data.tfds_builders rd_facts --seed 3 --size 50 --to_jsonl /tmp/rd_facts_s3
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rd.data.examples import write_jsonl
from rd.data.tfds_builders.base import (ExampleBuilder, config_with, get_builder, load_examples,
                                        prepare)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m rd.data.tfds_builders",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("name", help="registered builder, optionally with a config: rd_facts/large")
  parser.add_argument("--data_dir", default=None, help="default: $RD_CACHE_DIR/tfds")
  parser.add_argument("--manual_dir", default=None,
                      help="source files, for builders that read local data")
  parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
  parser.add_argument("--size", type=int, default=None, help="override the config's size")
  parser.add_argument("--split", action="append", default=None,
                      help="split(s) to export (default: all)")
  parser.add_argument("--to_jsonl", default=None, metavar="DIR",
                      help="write DIR/<split>.jsonl, one Example per line")
  args = parser.parse_args(argv)

  builder = get_builder(args.name, data_dir=args.data_dir)
  changes = {k: v for k, v in (("seed", args.seed), ("size", args.size)) if v is not None}
  if changes:
    if not isinstance(builder, ExampleBuilder):
      parser.error("--seed/--size need an rd ExampleBuilder")
    config = config_with(builder.builder_config, **changes)
    builder = type(builder)(data_dir=os.fspath(builder.data_dir_root), config=config)
  builder = prepare(builder, manual_dir=args.manual_dir)
  splits = args.split or list(builder.info.splits)
  print(f"{builder.info.full_name} at {builder.data_dir}")
  for split in splits:
    line = f"  {split}: {builder.info.splits[split].num_examples} examples"
    if args.to_jsonl:
      out = Path(args.to_jsonl)
      out.mkdir(parents=True, exist_ok=True)
      write_jsonl(out / f"{split}.jsonl", load_examples(builder, split))
      line += f" -> {out / f'{split}.jsonl'}"
    print(line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
