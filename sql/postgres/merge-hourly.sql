-- Replace every covered date of hourly_kpis with the staged rows. Plain DELETE + INSERT
-- (AWS's documented upsert) rather than MERGE or ON CONFLICT, so Redshift can run it as is.
-- Runs inside the load transaction; the caller reads both row counts.
DELETE FROM {{schema}}.hourly_kpis AS t
USING musickpi_stage_hourly_dates AS d
WHERE t.listen_date = d.listen_date;

INSERT INTO {{schema}}.hourly_kpis (
  listen_date, listen_hour, unique_listeners, listen_counts, top_artist,
  avg_sessions_per_user, diversity_index, most_engaged_age_group
)
SELECT
  listen_date, listen_hour, unique_listeners, listen_counts, top_artist,
  avg_sessions_per_user, diversity_index, most_engaged_age_group
FROM musickpi_stage_hourly;
