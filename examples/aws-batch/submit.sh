#!/usr/bin/env bash
# One run of the warehouse engine on AWS Batch: plan → an array job of SHARDS children → run.
#
#   ./submit.sh --register              # once, and after editing job-definitions.json
#   RUN_ID=day-2024-06-01 SHARDS=16 ./submit.sh
#
# The chain is Batch's own: the array job depends on the plan job (every child waits for it), and
# the run job depends on the array job as a whole, so it starts only when every child succeeded;
# a child that fails for good fails the run job without running it (nothing is loaded). No N_TO_N
# (that pairs the children of two array jobs index by index) and no SEQUENTIAL (that would run the
# children one after the other). Each child gets its index in AWS_BATCH_JOB_ARRAY_INDEX, which
# `musickpi normalize --shards N` reads as its shard.
#
# Batch array jobs have 2 to 10,000 children: SHARDS must be in that range (for one shard, run
# `musickpi run --engine warehouse` alone; it normalizes in its own worker threads).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = "--register" ]; then
  for step in plan normalize run; do
    aws batch register-job-definition --cli-input-json "$(jq ".$step" "$here/job-definitions.json")" \
      --query 'jobDefinitionArn' --output text
  done
  exit 0
fi

# A plan id: letters, digits and . _ : + - (up to 200), new for each run.
RUN_ID=${RUN_ID:-batch-$(date -u +%Y%m%dT%H%M%SZ)}
SHARDS=${SHARDS:-16}

# The submission of a step from submissions.json, with this run's id, shard count and dependency.
submission() {
  jq --arg run "$RUN_ID" --arg shards "$SHARDS" --arg after "${2:-}" '
    .[$ARGS.positional[0]]
    | .parameters.run_id = $run
    | if .parameters.shards then .parameters.shards = $shards else . end
    | if .arrayProperties then .arrayProperties.size = ($shards | tonumber) else . end
    | if .dependsOn then .dependsOn[0].jobId = $after else . end
  ' "$here/submissions.json" --args "$1"
}

submit() {
  aws batch submit-job --cli-input-json "$(submission "$@")" --query jobId --output text
}

plan=$(submit plan)
normalize=$(submit normalize "$plan")
run=$(submit run "$normalize")
echo "musickpi $RUN_ID: plan $plan, normalize $normalize (array of $SHARDS), run $run"
