#!/usr/bin/env bash
# Wait for a Flex Template job to leave the queue, and show why when it fails.
#
#   tools/await_job.sh JOB_ID REGION [PROJECT]
#
# `gcloud dataflow flex-template run` prints a job id as soon as the service has queued the job; main.py runs
# afterwards in the launcher VM, and a launch that fails there fails the job minutes later, with only "Error
# occurred in the launcher container: Template launch failed. See console logs." on the job. This polls the job
# until it runs (exit 0) or ends (exit 1: its messages, then the launcher's console log, from the Cloud Storage
# path the messages name). It works for a job launched any way: gcloud, the Console, Terraform, Cloud Build.
# AWAIT_JOB_INTERVAL (seconds between polls, 10) and AWAIT_JOB_MINUTES (30) bound the wait.
set -euo pipefail

usage="usage: tools/await_job.sh JOB_ID REGION [PROJECT]"
job=${1:?$usage}
region=${2:?$usage}
flags=(--region="$region")
if [ -n "${3:-}" ]; then flags+=(--project="$3"); fi
interval=${AWAIT_JOB_INTERVAL:-10}
deadline=$((SECONDS + 60 * ${AWAIT_JOB_MINUTES:-30}))

while :; do
  state=$(gcloud dataflow jobs describe "$job" "${flags[@]}" --format='value(currentState)')
  case "$state" in
    JOB_STATE_QUEUED | JOB_STATE_PENDING) ;;
    JOB_STATE_FAILED | JOB_STATE_CANCELLED | JOB_STATE_STOPPED)
      echo "job $job: $state" >&2
      messages=$(gcloud beta dataflow logs list "$job" "${flags[@]}" --importance=detailed --format='value(messageText)')
      printf '%s\n' "$messages" >&2
      console_log=$(sed -n 's|^Console log from launcher will be available at \(gs://[^ ]*\)\.$|\1|p' <<<"$messages")
      if [ -n "$console_log" ]; then
        echo "--- the launcher's console log, $console_log:" >&2
        gcloud storage cat "$console_log" >&2 || echo "(could not read $console_log)" >&2
      fi
      exit 1
      ;;
    *)
      echo "job $job: $state"
      exit 0
      ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "job $job still $state after ${AWAIT_JOB_MINUTES:-30} minutes" >&2
    exit 1
  fi
  sleep "$interval"
done
