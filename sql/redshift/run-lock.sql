-- The run lock: a lease row (Redshift has no advisory locks). Taken, renewed and released in
-- transactions that LOCK this table first; the load transaction locks it too and checks, under
-- that lock, that its run still holds the lease. Created before init(), by the first run lock.
CREATE TABLE IF NOT EXISTS {{schema}}.musickpi_run_lock (
  run_id       VARCHAR(256)  NOT NULL,
  token        VARCHAR(64)   NOT NULL,
  host         VARCHAR(1020) NOT NULL,
  pid          INT           NOT NULL,
  boot_id      VARCHAR(64),
  taken_at     TIMESTAMP     NOT NULL,
  heartbeat_at TIMESTAMP     NOT NULL,
  ttl_ms       BIGINT        NOT NULL
);
