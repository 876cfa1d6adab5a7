#!/usr/bin/env bash
# Runs the distillation job on every worker of a Cloud TPU pod slice (one JAX process per host).
#
#   TPU_NAME=my-v5p-32 ZONE=europe-west4-b launch/tpu_pod.sh \
#       --config=configs/distill.py --workdir=/mnt/shared/runs/ctx1 \
#       --config.model.path=/mnt/shared/gemma-3-270m --config.data.train=/mnt/shared/train.jsonl \
#       --config.mesh.data=-1 --config.mesh.fsdp=1
#
# Every argument goes to `python -m launch.run`, which gets `--distributed=auto`:
# `jax.distributed.initialize()` with no arguments reads the coordinator, process count and
# process id from the TPU VM's metadata, so no worker needs a different command line.
#
# Environment:
#   TPU_NAME, ZONE   the pod slice (required); PROJECT: gcloud project (default: gcloud's)
#   RD_DIR           the rd checkout on every worker (default: ~/rd)
#   PYTHON           its Python, with jax[tpu] and rd's requirements (default: python3)
#   DRY_RUN=1        print the gcloud command instead of running it
#
# Requirements on the workers:
#   * the same rd checkout and environment on all of them, e.g. once:
#       gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
#         --command='git clone https://YOUR/rd.git ~/rd && pip install -e ~/rd "jax[tpu]"'
#   * --workdir on a filesystem all workers share (Filestore/NFS, or a gcsfuse mount): Orbax
#     writes each checkpoint from all hosts together; process 0 writes metrics.jsonl and lora/.
#     A resumed run (same --workdir) continues from its newest checkpoint.
#   * the model and the data readable at the same paths on every worker: each host reads its
#     own slices of the weights and its own shard of the JSONL.
#   * data.global_batch divisible by the number of hosts, and config.mesh multiplying to the
#     pod's chip count (data=-1 takes whatever is left).
#
# Ctrl-C stops the local gcloud ssh, not necessarily the remote processes; to clean up a
# stuck run (a TPU held by a dead job shows "TPU in use"):
#   gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
#     --command='pkill -f "-m launch.run" || true'
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the pod slice name}"
: "${ZONE:?set ZONE to the pod slice zone}"
RD_DIR="${RD_DIR:-~/rd}"
PYTHON="${PYTHON:-python3}"

if [[ $# -eq 0 ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi

# Quote every job argument for the remote shell; RD_DIR keeps an unquoted leading ~.
job=$(printf ' %q' "$@")
remote="cd ${RD_DIR} && PYTHONUNBUFFERED=1 ${PYTHON} -m launch.run --distributed=auto${job}"

cmd=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$remote")
if [[ -n "${PROJECT:-}" ]]; then
  cmd+=(--project="$PROJECT")
fi

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
