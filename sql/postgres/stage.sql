-- Session-local staging for one load transaction. ON COMMIT DROP: a rolled-back or
-- committed load leaves nothing behind, so a reused connection can stage again.
-- LIKE without INCLUDING INDEXES: duplicate keys surface at INSERT into the target,
-- and COPY into an index-free table is faster.
CREATE TEMP TABLE musickpi_stage_hourly (LIKE {{schema}}.hourly_kpis) ON COMMIT DROP;
CREATE TEMP TABLE musickpi_stage_genre (LIKE {{schema}}.genre_level_kpis) ON COMMIT DROP;
-- The covered dates are staged apart from the rows: a date whose rows all vanished
-- (every row rejected on a re-run) must still have its old rows deleted.
CREATE TEMP TABLE musickpi_stage_hourly_dates (listen_date DATE NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE musickpi_stage_genre_dates (listen_date DATE NOT NULL) ON COMMIT DROP;
