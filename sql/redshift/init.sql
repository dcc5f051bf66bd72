-- musickpi warehouse DDL for Amazon Redshift. {{schema}} is replaced by a validated, quoted
-- identifier. Each statement runs on its own (autocommit) and is idempotent; a concurrent init
-- that wins a race makes ours fail once, and the retry then finds the table.
--
-- Redshift's VARCHAR(n) counts bytes, and TEXT would silently become VARCHAR(256): every string
-- column is a VARCHAR wide enough for any value musickpi writes. A KPI string holds up to 255
-- characters of any UTF-8 (4 bytes each at most: 1020 bytes); a file key whatever S3 allows
-- (1024 bytes). The primary keys are declared for readers and tools; Redshift does not enforce
-- them, and no statement of musickpi relies on them. No indexes: Redshift has none.

CREATE TABLE IF NOT EXISTS {{schema}}.hourly_kpis (
  listen_date            DATE          NOT NULL,
  listen_hour            INT           NOT NULL,
  unique_listeners       INT,
  listen_counts          INT,
  top_artist             VARCHAR(1020),
  avg_sessions_per_user  FLOAT,
  diversity_index        FLOAT,
  most_engaged_age_group VARCHAR(1020),
  PRIMARY KEY (listen_date, listen_hour)
);

CREATE TABLE IF NOT EXISTS {{schema}}.genre_level_kpis (
  listen_date           DATE          NOT NULL,
  track_genre           VARCHAR(1020) NOT NULL,
  listen_count          INT,
  popularity_index      FLOAT,
  average_duration      FLOAT,
  most_popular_track_id VARCHAR(1020),
  PRIMARY KEY (listen_date, track_genre)
);

-- One row per stream file ever loaded (the same columns as on PostgreSQL).
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_ledger (
  file_key             VARCHAR(1024) NOT NULL,
  fingerprint          VARCHAR(256)  NOT NULL,
  size                 BIGINT        NOT NULL,
  rows                 BIGINT        NOT NULL,
  run_id               VARCHAR(256)  NOT NULL,
  loaded_at            TIMESTAMPTZ   NOT NULL,
  archived_key         VARCHAR(1024),
  hourly_loaded        BOOLEAN       NOT NULL DEFAULT FALSE,
  genre_loaded         BOOLEAN       NOT NULL DEFAULT FALSE,
  archived_fingerprint VARCHAR(256),
  content_hash         VARCHAR(64),
  retracted_at         TIMESTAMPTZ,
  PRIMARY KEY (file_key, fingerprint)
);

CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_ledger_dates (
  file_key    VARCHAR(1024) NOT NULL,
  fingerprint VARCHAR(256)  NOT NULL,
  listen_date DATE          NOT NULL,
  PRIMARY KEY (file_key, fingerprint, listen_date)
);

-- Which lake the ledger belongs to: one row, kept so by a LOCK around every write.
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_lake (
  id         BOOLEAN       NOT NULL,
  lake       VARCHAR(4096) NOT NULL,
  claimed_at TIMESTAMPTZ   NOT NULL,
  PRIMARY KEY (id)
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
-- from before it gets the tables from init(), like musickpi_lake. file_id is the warehouse's own.
-- A file list is small: a copy on every node (DISTSTYLE ALL) joins locally.
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_listen_files (
  file_id     INT           NOT NULL,
  file_key    VARCHAR(1024) NOT NULL,
  fingerprint VARCHAR(256)  NOT NULL,
  rows        BIGINT        NOT NULL,
  run_id      VARCHAR(256)  NOT NULL,
  stored_at   TIMESTAMPTZ   NOT NULL,
  PRIMARY KEY (file_id)
)
DISTSTYLE ALL;

-- Stream IDs have no length limit in the contract; 65535 bytes is the widest VARCHAR Redshift
-- has (docs/redshift.md). DISTSTYLE EVEN: the KPI queries group by date and hour and join the
-- listens to songs by track_id and to users by user_id, so no one column is the join key, and a
-- key on an ID would pile a hit track's or a heavy listener's rows onto one slice; the dimensions
-- are small and are broadcast. SORTKEY (listen_date): a recomputed date reads its blocks only.
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_listens (
  file_id     INT            NOT NULL,
  line        BIGINT         NOT NULL,
  user_id     VARCHAR(65535) NOT NULL,
  track_id    VARCHAR(65535) NOT NULL,
  listen_date DATE           NOT NULL,
  listen_hour SMALLINT       NOT NULL
)
DISTSTYLE EVEN
SORTKEY (listen_date);
