-- musickpi warehouse DDL. {{schema}} is replaced by a validated, quoted identifier.
-- Every statement is idempotent: init runs on every fresh warehouse and may race another
-- init (the caller serialises those with a transaction-level advisory lock).

CREATE SCHEMA IF NOT EXISTS {{schema}};

-- Column names and types are those of the original DAG's DDL, so existing dashboards keep
-- working; the primary keys are new and make a double load fail loudly instead of duplicating.
CREATE TABLE IF NOT EXISTS {{schema}}.hourly_kpis (
  listen_date            DATE         NOT NULL,
  listen_hour            INT          NOT NULL,
  unique_listeners       INT,
  listen_counts          INT,
  top_artist             VARCHAR(255),
  avg_sessions_per_user  FLOAT,
  diversity_index        FLOAT,
  most_engaged_age_group VARCHAR(255),
  PRIMARY KEY (listen_date, listen_hour)
);

CREATE TABLE IF NOT EXISTS {{schema}}.genre_level_kpis (
  listen_date           DATE         NOT NULL,
  track_genre           VARCHAR(255) NOT NULL,
  listen_count          INT,
  popularity_index      FLOAT,
  average_duration      FLOAT,
  most_popular_track_id VARCHAR(255),
  PRIMARY KEY (listen_date, track_genre)
);

-- One row per stream file ever loaded. No array columns: Redshift has none, and a port
-- should be able to reuse this shape unchanged.
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_ledger (
  file_key      TEXT        NOT NULL,
  fingerprint   TEXT        NOT NULL,
  size          BIGINT      NOT NULL,
  rows          BIGINT      NOT NULL,
  run_id        TEXT        NOT NULL,
  loaded_at     TIMESTAMPTZ NOT NULL,
  archived_key  TEXT        NULL,
  hourly_loaded BOOLEAN     NOT NULL DEFAULT FALSE,
  genre_loaded  BOOLEAN     NOT NULL DEFAULT FALSE,
  -- archived_fingerprint, content_hash and retracted_at were added later: init() adds them
  -- to every ledger (ADDED_LEDGER_COLUMNS), old or new.
  PRIMARY KEY (file_key, fingerprint)
);

-- The dates a file holds rows for: late files make those dates be recomputed (spec §9).
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_ledger_dates (
  file_key    TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  listen_date DATE NOT NULL,
  PRIMARY KEY (file_key, fingerprint, listen_date)
);

-- One row per run of run, compute, archive, retract (dry and failed runs included), written in a
-- transaction of its own after the run, never inside a load. Added after the first release: a
-- schema from before it gets the table from init(), like musickpi_lake. JSON is kept as text
-- (Redshift has no JSON type); the widths are bytes on Redshift, and the same on both dialects.
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_runs (
  run_id              VARCHAR(64)    NOT NULL,
  command             VARCHAR(16)    NOT NULL,
  started_at          TIMESTAMPTZ    NOT NULL,
  finished_at         TIMESTAMPTZ    NOT NULL,
  status              VARCHAR(16)    NOT NULL,
  exit_code           INT            NOT NULL,
  error_code          VARCHAR(64),
  error_message       VARCHAR(4096),
  error_stage         VARCHAR(32),
  dry_run             BOOLEAN        NOT NULL,
  lake                VARCHAR(4096)  NOT NULL,
  rows_read           BIGINT         NOT NULL,
  complete_rows       BIGINT         NOT NULL,
  rejects             VARCHAR(4096)  NOT NULL,
  hourly_rows_written INT            NOT NULL,
  genre_rows_written  INT            NOT NULL,
  dates_recomputed    VARCHAR(65535) NOT NULL,
  files_loaded        INT            NOT NULL,
  files_archived      INT            NOT NULL,
  timings             VARCHAR(4096)  NOT NULL,
  version             VARCHAR(32)    NOT NULL,
  airflow_dag_id      VARCHAR(1024),
  airflow_task_id     VARCHAR(1024),
  airflow_run_id      VARCHAR(1024),
  airflow_try_number  INT,
  PRIMARY KEY (run_id)
);

-- The warehouse engine keeps every stream file's normalized listens, so that a late file's dates
-- are recomputed in SQL over the listens of every counted file (docs/scale.md). Orphan rows are
-- kept too: a later dimension can make them complete. Added after the first release: a schema
-- from before it gets the tables from init(), like musickpi_lake. file_id is the warehouse's own
-- (not a plan's): a new file takes the highest id + 1.
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_listen_files (
  file_id     INT         NOT NULL,
  file_key    TEXT        NOT NULL,
  fingerprint TEXT        NOT NULL,
  rows        BIGINT      NOT NULL,
  run_id      TEXT        NOT NULL,
  stored_at   TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (file_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_listens (
  file_id     INT      NOT NULL,
  line        BIGINT   NOT NULL,
  user_id     TEXT     NOT NULL,
  track_id    TEXT     NOT NULL,
  listen_date DATE     NOT NULL,
  listen_hour SMALLINT NOT NULL
);

-- A recomputed date reads its listens; replacing a file deletes by file id.
CREATE INDEX IF NOT EXISTS musickpi_listens_date ON {{schema}}.musickpi_listens (listen_date);
CREATE INDEX IF NOT EXISTS musickpi_listens_file ON {{schema}}.musickpi_listens (file_id);
CREATE INDEX IF NOT EXISTS musickpi_listen_files_key ON {{schema}}.musickpi_listen_files (file_key, fingerprint);
