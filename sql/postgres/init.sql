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
