"""musickpi from Airflow with a KubernetesPodOperator: the daily load in a pod.

The pod runs the image of the repository's Dockerfile (entrypoint `tini -- musickpi`, a numeric
non-root user, so `runAsNonRoot` admission policies accept it). Differences from the other variants:

- XCom: the operator reads /airflow/xcom/return.json from the pod (a sidecar does it), so the run
  writes its report there with --report-file; --json still prints it as the log's last line.
- Credentials: a Kubernetes Secret `musickpi-warehouse` with PGHOST, PGPORT, PGUSER, PGPASSWORD and
  PGDATABASE, all exposed as variables; S3 access through the service account's IAM role (IRSA or
  EKS Pod Identity), so no AWS key is in the pod at all.
- Signals: a deleted or timed-out pod gets SIGTERM, which tini hands to musickpi; the grace period
  below leaves it time to roll back (it stops by itself after 15 s).

apache-airflow-providers-cncf-kubernetes 7+ (skip_on_exit_code, on_finish_action).
"""

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret

IMAGE = "registry.example.com/musickpi:0.1.0"

with DAG(
    dag_id="musickpi_daily_kubernetes",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2024, 6, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["musickpi"],
) as dag:
    KubernetesPodOperator(
        task_id="musickpi_run",
        name="musickpi-run",
        namespace="data",
        image=IMAGE,
        arguments=[
            "run",
            "--lake",
            "s3://my-lake/music",
            "--expect-dates",
            "{{ ds }}",
            "--max-bad-rows",
            "100",
            "--log-format",
            "json",
            "--json",
            "--report-file",
            "/airflow/xcom/return.json",
        ],
        # deploy_target None: every key of the Secret becomes a variable of the same name.
        secrets=[Secret(deploy_type="env", deploy_target=None, secret="musickpi-warehouse")],
        env_vars={"AWS_REGION": "eu-west-1"},
        service_account_name="musickpi",
        termination_grace_period=60,
        skip_on_exit_code=65,
        do_xcom_push=True,
        on_finish_action="delete_succeeded_pod",
        get_logs=True,
        execution_timeout=timedelta(hours=2),
    )
