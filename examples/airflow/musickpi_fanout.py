"""musickpi's warehouse engine from Airflow: plan once, normalize the shards in mapped tasks, load once.

One day at internet scale is too much for one process (docs/scale.md). The warehouse engine splits a
run in three steps, and Airflow runs them:

1. `musickpi_plan` (one task): lists the pending files (the ledger decides), fixes them with their
   fingerprints and assigns them to SHARDS shards; the plan is written under --staging, named by
   Airflow's run id. Every later step reads the plan, never the listing: a file that lands meanwhile
   waits for the next DAG run.
2. `normalize` (mapped with .expand()): each mapped task normalizes a contiguous batch of shards
   (`musickpi normalize --shard i/N`, one after the other). It needs the lake and the staging, not
   the warehouse, so no database credentials reach these tasks.
3. `musickpi_run` (one task, after every normalize task succeeded): `run --engine warehouse
   --run-id` checks that every shard left its manifest, COPYs the parts into the warehouse, computes
   the KPIs there and loads them, writes the ledger and archives the files, as the daily run does.

Why batches: Airflow refuses to expand a task into more than [core] max_map_length mapped tasks
(1,024 by default). SHARDS is chosen for the warehouse (a multiple of the Redshift cluster's slices,
parts of 64-125 MB) and for the retry unit, not for Airflow's limit, so `shard_batches` groups the
shards into at most MAX_MAPPED contiguous batches. With SHARDS <= MAX_MAPPED each batch holds one
shard. (The other way, `--shards min(N, 1024)`, also works but ties the plan to the scheduler.)

What the tasks rely on (as in musickpi_bash.py):

- Exit 65 (input refused, nothing loaded) skips the task (skip_on_exit_code=65); the downstream
  tasks are then skipped too. 69 (warehouse or S3 unreachable) and 75 (another run holds the lock)
  are worth a retry. Two 75s are not cured by a retry of the same task: MKPI_PLAN_STALE (a planned
  file changed or vanished, or another run loaded it) and MKPI_SHARDS_INCOMPLETE (a shard left no
  manifest; cannot happen here, the run task waits for all normalize tasks). For those, clear the
  whole DAG run or let the next one plan again: nothing was loaded and the files are still pending.
- Re-running a shard (a retry, a cleared task) replaces its output: normalize removes the shard's
  manifest first, rewrites its parts and writes the manifest last. Re-running the plan task (same run
  id) makes the plan again and removes every shard's manifest: clear its downstream tasks with it
  (the Clear dialog's "Downstream" option), so that they normalize the new plan.
- Once the run has loaded and archived, it removes the plan's staging (plan and parts). A retry of a
  run task whose load had committed (killed just after) exits 75 MKPI_PLAN_STALE (its files are
  loaded), or 66 MKPI_PLAN_NOT_FOUND once the staging is gone: the files were loaded once either way
  (`musickpi runs` shows the run), and the next run or `musickpi archive` finishes a move left undone.
- With --json, the last output line is the report on one line, so do_xcom_push pushes it; the plan's
  report carries `plan.shards`, which `shard_batches` reads.
- Airflow's run ids (`scheduled__2024-06-01T02:30:00+00:00`, `manual__…`) contain ':' and '+', which a
  plan id may hold; a run id given by hand with other characters (a space, '/') is refused with 64.
  The run id is single-quoted in the commands for the shell.

Connections: `musickpi_warehouse` (Postgres: host, port, login, password, schema = the database; for
Redshift add MUSICKPI_WAREHOUSE=redshift://… to WAREHOUSE_ENV, see README) and `aws_default`.

Airflow 2.9+ (@task.bash; dynamic task mapping is 2.3+). On Airflow 3, BashOperator is imported from
airflow.providers.standard.operators.bash and `task` from airflow.sdk.
"""

import json
from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.decorators import task
from airflow.operators.bash import BashOperator

LAKE = "s3://my-lake/music"
# Redshift's COPY reads the parts from S3: the staging must be an s3:// prefix outside streams/.
STAGING = "s3://my-lake-staging/musickpi/"
# Shards of each plan. More shards than mapped tasks is fine: see shard_batches.
SHARDS = 64
# Airflow's [core] max_map_length (1,024 by default): the most mapped tasks one expand() may create.
MAX_MAPPED = 1024

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "{{ conn.aws_default.login }}",
    "AWS_SECRET_ACCESS_KEY": "{{ conn.aws_default.password }}",
    "AWS_REGION": "{{ conn.aws_default.extra_dejson.region_name }}",
}

# plan and run need the warehouse (the ledger, the load); normalize does not.
WAREHOUSE_ENV = {
    "PGHOST": "{{ conn.musickpi_warehouse.host }}",
    "PGPORT": "{{ conn.musickpi_warehouse.port }}",
    "PGUSER": "{{ conn.musickpi_warehouse.login }}",
    "PGPASSWORD": "{{ conn.musickpi_warehouse.password }}",
    "PGDATABASE": "{{ conn.musickpi_warehouse.schema }}",
    **AWS_ENV,
}

PLAN = (
    "musickpi plan --lake " + LAKE + " --staging " + STAGING + " --run-id '{{ run_id }}' --shards " + str(SHARDS)
    + " --log-format json --json"
)

# One shard's command; --shard i/N is appended per shard of the batch.
NORMALIZE = "musickpi normalize --lake " + LAKE + " --staging " + STAGING + " --run-id '{{ run_id }}' --log-format json --json"

RUN = (
    "musickpi run --engine warehouse --run-id '{{ run_id }}' --lake " + LAKE + " --staging " + STAGING
    + " --expect-dates {{ ds }} --max-bad-rows 100 --log-format json --json"
)

DEFAULTS = {
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
}


def batches_of(shards, limit=None):
    """Shards 0..shards-1 as at most `limit` (MAX_MAPPED) contiguous batches of "i/N", sizes within one."""
    count = min(shards, MAX_MAPPED if limit is None else limit)
    size, extra = divmod(shards, count)
    out, start = [], 0
    for b in range(count):
        end = start + size + (1 if b < extra else 0)
        out.append([f"{i}/{shards}" for i in range(start, end)])
        start = end
    return out


def normalize_command(shards):
    """The batch's shards one after the other; the first failure ends the task with its exit code."""
    return " && ".join(f"{NORMALIZE} --shard {s}" for s in shards)


with DAG(
    dag_id="musickpi_fanout",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2024, 6, 1, tz="UTC"),
    catchup=False,
    # One plan at a time: a second DAG run would plan the same pending files.
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["musickpi"],
) as dag:
    plan = BashOperator(
        task_id="musickpi_plan",
        bash_command=PLAN,
        env=WAREHOUSE_ENV,
        append_env=True,
        skip_on_exit_code=65,
        do_xcom_push=True,
        execution_timeout=timedelta(minutes=30),
    )

    @task
    def shard_batches(report):
        """The plan's shards (from its one-line report in XCom), in at most MAX_MAPPED batches."""
        return batches_of(json.loads(report)["plan"]["shards"])

    # Mapped: one task instance per batch. Retries re-run the whole batch (each shard is idempotent).
    @task.bash(env=AWS_ENV, append_env=True, skip_on_exit_code=65, execution_timeout=timedelta(hours=1))
    def normalize(shards):
        return normalize_command(shards)

    load = BashOperator(
        task_id="musickpi_run",
        bash_command=RUN,
        env=WAREHOUSE_ENV,
        append_env=True,
        skip_on_exit_code=65,
        do_xcom_push=True,
        execution_timeout=timedelta(hours=2),
    )

    normalize.expand(shards=shard_batches(plan.output)) >> load
