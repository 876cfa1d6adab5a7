"""Command-line parsing shared by the config-driven jobs (`--config=file.py:arg`, overrides)."""

import re
import sys

from absl import flags


def parse_flags(argv):
  """absl's parser, with a bad `--config.x.y` override reported as one line, not a traceback.

  Pass as `app.run(main, flags_parser=parse_flags)`.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # e.g. a wrongly typed override
    sys.exit(f"error: {e}")
  except (AttributeError, KeyError) as e:  # an override of a field the config does not have
    match = re.search(r'instead of "(\w+)"', str(e)) or re.search(r"(\w+)", str(e))
    key = match[1] if match else "?"
    arg = next((a for a in argv if re.search(rf"\.{key}(=|\.|$)", a)), key)
    hint = re.search(r"Did you mean [^?]*\?", str(e))
    sys.exit(f"error: {arg}: config has no field {key!r}" + (f"; {hint[0]}" if hint else ""))


def validate_or_exit(validate, config) -> None:
  """Runs a config validator before anything expensive; a bad value exits with its one line."""
  from rd.config import ConfigError  # pylint: disable=import-outside-toplevel
  try:
    validate(config)
  except ConfigError as e:
    sys.exit(f"error: {e}")
