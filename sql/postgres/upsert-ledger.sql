-- Records loaded files. $1..$9 are parallel arrays (one element per file). A file already
-- known keeps the tables it was loaded into before: loaded tables are a union, never
-- narrowed, and an archive location once recorded is not forgotten.
INSERT INTO {{schema}}.musickpi_ledger AS l (
  file_key, fingerprint, size, rows, run_id, loaded_at, archived_key, hourly_loaded, genre_loaded,
  content_hash
)
SELECT f.file_key, f.fingerprint, f.size, f.rows, f.run_id, now(), f.archived_key,
       f.hourly_loaded, f.genre_loaded, f.content_hash
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
            $7::boolean[], $8::boolean[], $9::text[])
  AS f(file_key, fingerprint, size, rows, run_id, archived_key, hourly_loaded, genre_loaded, content_hash)
ON CONFLICT (file_key, fingerprint) DO UPDATE SET
  size          = EXCLUDED.size,
  rows          = EXCLUDED.rows,
  run_id        = EXCLUDED.run_id,
  loaded_at     = EXCLUDED.loaded_at,
  archived_key  = COALESCE(EXCLUDED.archived_key, l.archived_key),
  hourly_loaded = l.hourly_loaded OR EXCLUDED.hourly_loaded,
  genre_loaded  = l.genre_loaded OR EXCLUDED.genre_loaded,
  content_hash  = COALESCE(EXCLUDED.content_hash, l.content_hash);
