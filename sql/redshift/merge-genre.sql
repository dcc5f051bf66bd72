-- Replace every covered date of genre_level_kpis with the staged rows (see merge-hourly.sql).
DELETE FROM {{schema}}.genre_level_kpis
USING musickpi_stage_genre_dates
WHERE genre_level_kpis.listen_date = musickpi_stage_genre_dates.listen_date;

INSERT INTO {{schema}}.genre_level_kpis (
  listen_date, track_genre, listen_count, popularity_index, average_duration,
  most_popular_track_id
)
SELECT
  listen_date, track_genre, listen_count, popularity_index, average_duration,
  most_popular_track_id
FROM musickpi_stage_genre;
