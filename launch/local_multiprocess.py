r"""Runs a job as N cooperating JAX processes on this machine: the CPU stand-in for a pod.

  python -m launch.local_multiprocess --num_processes=2 --devices_per_process=1 -- \
      --config=configs/distill.py:tiny --workdir=/tmp/run --config.model.path=MODEL \
      --config.data.train=train.jsonl --config.mesh.data=2

Everything after `--` goes to the job (default `launch.run`; `--module` picks another that
takes the same --coordinator_address/--num_processes/--process_id flags). Each process gets
`--coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=i`, JAX_PLATFORMS=cpu and
`devices_per_process` fake CPU devices (XLA_FLAGS), so the job sees N * devices_per_process
global devices; its mesh (config.mesh) must multiply to that. Cross-process collectives use
gloo, JAX's default CPU implementation. Output lines are prefixed `[p0] `, `[p1] `, ...; if any
process fails (or --timeout passes) the others are stopped and this exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S+")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  try:
    import portpicker  # pylint: disable=import-outside-toplevel
    return portpicker.pick_unused_port()
  except ImportError:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      return s.getsockname()[1]


def process_env(devices: int, base: dict[str, str] | None = None) -> dict[str, str]:
  """The environment of one process: CPU only, `devices` fake devices, rd importable."""
  env = dict(os.environ if base is None else base)
  flags = _DEVICE_COUNT_FLAG.sub("", env.get("XLA_FLAGS", "")).strip()
  env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([_REPO_ROOT, *filter(None, [env.get("PYTHONPATH")])])
  env["PYTHONUNBUFFERED"] = "1"
  return env


def commands(module: str, job_args: list[str], num_processes: int, port: int) -> list[list[str]]:
  return [[sys.executable, "-m", module, *job_args, f"--coordinator_address=127.0.0.1:{port}",
           f"--num_processes={num_processes}", f"--process_id={i}"]
          for i in range(num_processes)]


def _pump(index: int, stream, out, lock: threading.Lock) -> None:
  for line in stream:
    with lock:
      out.write(f"[p{index}] {line}")
      out.flush()
  stream.close()


def _stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
  """SIGTERM the running processes, then SIGKILL those still running after `grace` seconds (a
  process blocked in a collective whose peer died never reaches its SIGTERM check)."""
  running = [p for p in procs if p.poll() is None]
  for p in running:
    p.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + grace
  for p in running:
    try:
      p.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def run(job_args: list[str], *, num_processes: int = 2, devices_per_process: int = 1,
        module: str = "launch.run", port: int | None = None, timeout: float | None = None,
        out=None) -> int:
  """Starts the processes, streams their prefixed output to `out`, returns 0 if all succeed."""
  out = out or sys.stdout
  port = port or free_port()
  env = process_env(devices_per_process)
  procs, pumps, lock = [], [], threading.Lock()
  try:
    for i, cmd in enumerate(commands(module, job_args, num_processes, port)):
      proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, bufsize=1)
      procs.append(proc)
      pump = threading.Thread(target=_pump, args=(i, proc.stdout, out, lock), daemon=True)
      pump.start()
      pumps.append(pump)
    deadline = None if timeout is None else time.monotonic() + timeout
    failed = None
    while failed is None and any(p.poll() is None for p in procs):
      failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
      if deadline is not None and time.monotonic() > deadline:
        with lock:
          out.write(f"local_multiprocess: timed out after {timeout:.0f}s\n")
        _stop(procs)
        return 124
      time.sleep(0.1)
    if failed is None:
      failed = next((i for i, p in enumerate(procs) if p.returncode != 0), None)
    if failed is not None:
      code = procs[failed].returncode
      _stop(procs)
      for pump in pumps:
        pump.join(timeout=5)
      with lock:
        out.write(f"local_multiprocess: process {failed} exited with {code}; stopped the rest\n")
      return code if code and code > 0 else 1
    for pump in pumps:
      pump.join(timeout=5)
    return 0
  finally:
    _stop(procs)  # Ctrl-C or an error here: leave no orphans


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  own, job_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (
      argv, [])
  parser = argparse.ArgumentParser(
      prog="python -m launch.local_multiprocess",
      description="Run a JAX job as N processes on 127.0.0.1; job arguments go after `--`.")
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=1,
                      help="fake CPU devices in each process")
  parser.add_argument("--module", default="launch.run", help="the job's module")
  parser.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
  parser.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
  args = parser.parse_args(own)
  if args.num_processes < 1 or args.devices_per_process < 1:
    parser.error("--num_processes and --devices_per_process must be >= 1")
  return run(job_args, num_processes=args.num_processes,
             devices_per_process=args.devices_per_process, module=args.module, port=args.port,
             timeout=args.timeout)


if __name__ == "__main__":
  sys.exit(main())
