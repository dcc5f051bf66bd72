"""musickpi from Airflow with a DockerOperator: the daily load in the image of the repository's Dockerfile.

The image's entrypoint is `tini -- musickpi`, so `command` holds musickpi's arguments only; tini is
PID 1 and hands the SIGTERM of `docker stop` (the task being killed or timing out) to musickpi, which
rolls back or finishes its transaction and exits 143. `docker stop` waits 10 s before SIGKILL: a
commit in flight is atomic either way.

As with the BashOperator (see musickpi_bash.py): 65 skips the task, the last line of the container's
output is the one-line report (do_xcom_push with xcom_all=False pushes exactly that line), and the
credentials come from Airflow connections into PG* and AWS_* variables. `environment` is templated
and Airflow masks connection passwords in the rendered view.

apache-airflow-providers-docker 3.6+ (skip_on_exit_code).
"""

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.providers.docker.operators.docker import DockerOperator

IMAGE = "registry.example.com/musickpi:0.1.0"

with DAG(
    dag_id="musickpi_daily_docker",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2024, 6, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["musickpi"],
) as dag:
    DockerOperator(
        task_id="musickpi_run",
        image=IMAGE,
        command="run --lake s3://my-lake/music --expect-dates {{ ds }} --max-bad-rows 100 --log-format json --json",
        environment={
            "PGHOST": "{{ conn.musickpi_warehouse.host }}",
            "PGPORT": "{{ conn.musickpi_warehouse.port }}",
            "PGUSER": "{{ conn.musickpi_warehouse.login }}",
            "PGPASSWORD": "{{ conn.musickpi_warehouse.password }}",
            "PGDATABASE": "{{ conn.musickpi_warehouse.schema }}",
            "AWS_ACCESS_KEY_ID": "{{ conn.aws_default.login }}",
            "AWS_SECRET_ACCESS_KEY": "{{ conn.aws_default.password }}",
            "AWS_REGION": "{{ conn.aws_default.extra_dejson.region_name }}",
        },
        docker_url="unix://var/run/docker.sock",
        network_mode="bridge",
        # Nothing of the container is needed afterwards: the report is in XCom, the rejects in the lake.
        auto_remove="success",
        mount_tmp_dir=False,
        skip_on_exit_code=65,
        do_xcom_push=True,
        xcom_all=False,
        execution_timeout=timedelta(hours=2),
    )
