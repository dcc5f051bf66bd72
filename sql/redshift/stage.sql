-- Session-local staging for one load, created before its transaction on the load's own session
-- (temp tables live in one session; the session ends with the load). The KPI rows arrive by
-- COPY from S3; the covered dates, apart from the rows, so that a date whose rows all vanished
-- still loses its old rows; the ledger side by plain multi-row INSERTs.
CREATE TEMP TABLE musickpi_stage_hourly (LIKE {{schema}}.hourly_kpis);
CREATE TEMP TABLE musickpi_stage_genre (LIKE {{schema}}.genre_level_kpis);
CREATE TEMP TABLE musickpi_stage_hourly_dates (listen_date DATE NOT NULL);
CREATE TEMP TABLE musickpi_stage_genre_dates (listen_date DATE NOT NULL);
CREATE TEMP TABLE musickpi_stage_ledger (
  file_key      VARCHAR(1024) NOT NULL,
  fingerprint   VARCHAR(256)  NOT NULL,
  size          BIGINT        NOT NULL,
  rows          BIGINT        NOT NULL,
  run_id        VARCHAR(256)  NOT NULL,
  archived_key  VARCHAR(1024),
  hourly_loaded BOOLEAN       NOT NULL,
  genre_loaded  BOOLEAN       NOT NULL,
  content_hash  VARCHAR(64)
);
CREATE TEMP TABLE musickpi_stage_ledger_dates (
  file_key    VARCHAR(1024) NOT NULL,
  fingerprint VARCHAR(256)  NOT NULL,
  listen_date DATE          NOT NULL
);
CREATE TEMP TABLE musickpi_stage_retire (file_key VARCHAR(1024) NOT NULL, fingerprint VARCHAR(256) NOT NULL);
CREATE TEMP TABLE musickpi_stage_retract (file_key VARCHAR(1024) NOT NULL, fingerprint VARCHAR(256) NOT NULL);
CREATE TEMP TABLE musickpi_ledger_merged (LIKE {{schema}}.musickpi_ledger);
