"""musickpi from Airflow with a BashOperator: the daily KPI load, and a DAG that recomputes chosen days.

musickpi runs on the Airflow worker itself (`npm install -g` from a clone, or the repository's bin/ on
the PATH; Node 20). What the tasks rely on:

- Exit code 65 means the input was refused (a schema failure, bad rows over --max-bad-rows, dates
  outside --expect-dates with --strict-dates): nothing was loaded and the files wait in streams/. The
  task is *skipped* instead of failed (skip_on_exit_code=65); look at the rejects CSV. Codes 69 (the
  warehouse or S3 unreachable) and 75 (another run holds the lock) are worth a retry; the others fail.
- With --json, the last line the command writes (stdout and stderr together, which is what the
  BashOperator reads) is the run report on one line, so do_xcom_push pushes the report. The report of
  a run over many files can be large: mind the XCom size of your metadata database.
- --log-format json makes every other line one JSON object (time, level, run_id, event, message),
  which log shippers parse; the report stays the last line.
- Credentials come from Airflow connections, templated into the PG* and AWS_* variables the task
  sees (`env` is templated; append_env keeps the worker's PATH). Airflow masks connection passwords
  in its logs and in the rendered-template view. Drop the AWS_* lines to use the worker's own role.

Connections: `musickpi_warehouse` (Postgres: host, port, login, password, schema = the database) and
`aws_default` (AWS: login = access key id, password = secret key, extra {"region_name": "..."}).

Airflow 2.6+ (skip_on_exit_code). On Airflow 3 the operator lives in
airflow.providers.standard.operators.bash.
"""

import json
from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator

LAKE = "s3://my-lake/music"

# The warehouse and AWS credentials, from the connections (rendered when the task runs).
ENV = {
    "PGHOST": "{{ conn.musickpi_warehouse.host }}",
    "PGPORT": "{{ conn.musickpi_warehouse.port }}",
    "PGUSER": "{{ conn.musickpi_warehouse.login }}",
    "PGPASSWORD": "{{ conn.musickpi_warehouse.password }}",
    "PGDATABASE": "{{ conn.musickpi_warehouse.schema }}",
    "AWS_ACCESS_KEY_ID": "{{ conn.aws_default.login }}",
    "AWS_SECRET_ACCESS_KEY": "{{ conn.aws_default.password }}",
    "AWS_REGION": "{{ conn.aws_default.extra_dejson.region_name }}",
}

# Load what is new, warn about listen dates outside the run's day (late files are expected: the
# late-file rule recomputes their dates), and tolerate a few bad rows before refusing the input.
RUN = (
    "musickpi run --lake " + LAKE + " --expect-dates {{ ds }} --max-bad-rows 100 --log-format json --json"
)

# Recompute exactly the days of the data interval over every file that carries them (loaded or
# new), e.g. after a fix in the warehouse: `airflow dags backfill -s 2024-06-01 -e 2024-06-07 musickpi_recompute`.
RECOMPUTE = (
    "musickpi compute --lake " + LAKE + ' --start "{{ data_interval_start }}" --end "{{ data_interval_end }}"'
    " --log-format json --json"
)

DEFAULTS = {
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
}


def summarize(ti):
    """Reads the one-line report the musickpi task pushed to XCom."""
    report = json.loads(ti.xcom_pull(task_ids="musickpi_run"))
    totals = report["totals"]
    print(
        f"run {report['runId']}: {totals['files']} file(s), {totals['rowsRead']} rows, "
        f"{report['rowsWritten']['hourly_kpis']} hourly rows written, warnings: {len(report['warnings'])}"
    )
    return report["rowsWritten"]


with DAG(
    dag_id="musickpi_daily",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2024, 6, 1, tz="UTC"),
    catchup=False,
    # musickpi takes a run lock anyway (exit 75); one run at a time keeps the retries meaningful.
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["musickpi"],
) as daily:
    load = BashOperator(
        task_id="musickpi_run",
        bash_command=RUN,
        env=ENV,
        append_env=True,
        skip_on_exit_code=65,
        do_xcom_push=True,
        execution_timeout=timedelta(hours=2),
    )
    report = PythonOperator(task_id="summarize", python_callable=summarize)
    load >> report

with DAG(
    dag_id="musickpi_recompute",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 6, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=True,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["musickpi"],
) as recompute:
    BashOperator(
        task_id="musickpi_compute",
        bash_command=RECOMPUTE,
        env=ENV,
        append_env=True,
        skip_on_exit_code=65,
        do_xcom_push=True,
    )
