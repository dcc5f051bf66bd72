#!/usr/bin/env bash
# One run of the warehouse engine on Kubernetes: the plan Job, then the Indexed normalize Job, then
# the run Job, each started once the one before has completed. Kubernetes has no dependencies
# between Jobs, so this script (or your scheduler: cron in a CronJob with kubectl, an Airflow
# KubernetesJobOperator per step, Argo) chains them. It stops at the first failed Job: nothing is
# loaded before the run Job, and the files stay pending for the next run.
#
#   NS=data RUN_ID=day-2024-06-01 ./fanout.sh     # the manifests name no namespace: NS decides
set -euo pipefail

NS=${NS:-data}
# A plan id: letters, digits and . _ : + - (up to 200), new for each run: normalize and run
# read the plan of exactly this id.
RUN_ID=${RUN_ID:-k8s-$(date -u +%Y%m%dT%H%M%SZ)}
here=$(cd "$(dirname "$0")" && pwd)

# Waits for the Job to end: 0 when it completed, 1 when it failed.
wait_job() {
  local conditions
  while :; do
    conditions=$(kubectl -n "$NS" get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $conditions " in
      *" Complete "*) return 0 ;;
      *" Failed "*)
        echo "musickpi: job $1 failed; see kubectl -n $NS logs job/$1" >&2
        return 1
        ;;
    esac
    sleep 10
  done
}

kubectl -n "$NS" apply -f "$here/config.yaml"
kubectl -n "$NS" patch configmap musickpi-fanout --type merge -p "{\"data\":{\"RUN_ID\":\"$RUN_ID\"}}"
# Job names are fixed: the previous run's Jobs go first (their logs are in your log store).
for step in plan normalize run; do
  kubectl -n "$NS" delete job "musickpi-$step" --ignore-not-found --wait=true
done
for step in plan normalize run; do
  kubectl -n "$NS" apply -f "$here/$step-job.yaml"
  wait_job "musickpi-$step"
done
echo "musickpi: run $RUN_ID loaded"
