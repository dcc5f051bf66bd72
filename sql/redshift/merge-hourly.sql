-- Replace every covered date of hourly_kpis with the staged rows: AWS's documented merge
-- (DELETE ... USING the stage, then INSERT), inside the load transaction, under its LOCK.
-- Explicit column lists: an adopted table may order its columns otherwise.
DELETE FROM {{schema}}.hourly_kpis
USING musickpi_stage_hourly_dates
WHERE hourly_kpis.listen_date = musickpi_stage_hourly_dates.listen_date;

INSERT INTO {{schema}}.hourly_kpis (
  listen_date, listen_hour, unique_listeners, listen_counts, top_artist,
  avg_sessions_per_user, diversity_index, most_engaged_age_group
)
SELECT
  listen_date, listen_hour, unique_listeners, listen_counts, top_artist,
  avg_sessions_per_user, diversity_index, most_engaged_age_group
FROM musickpi_stage_hourly;
