-- The batch's files merged into the ledger without ON CONFLICT: each row is computed from the
-- staged entry and what the ledger held (the same rules as PostgreSQL's upsert: loaded tables
-- are a union, an archive location or content hash once recorded is kept when the batch has
-- none, the archived fingerprint and the retraction are left as they were), then the old rows
-- are deleted and the new ones inserted. The aggregate reads every old row of a key, so even a
-- duplicated row (keys are not enforced) folds into one.
INSERT INTO musickpi_ledger_merged (
  file_key, fingerprint, size, rows, run_id, loaded_at, archived_key, hourly_loaded, genre_loaded,
  archived_fingerprint, content_hash, retracted_at
)
SELECT s.file_key, s.fingerprint, s.size, s.rows, s.run_id, GETDATE(),
       COALESCE(s.archived_key, o.archived_key),
       s.hourly_loaded OR COALESCE(o.hourly_loaded, FALSE),
       s.genre_loaded OR COALESCE(o.genre_loaded, FALSE),
       o.archived_fingerprint,
       COALESCE(s.content_hash, o.content_hash),
       o.retracted_at
FROM musickpi_stage_ledger s
LEFT JOIN (
  SELECT l.file_key, l.fingerprint,
         MAX(l.archived_key) AS archived_key,
         BOOL_OR(l.hourly_loaded) AS hourly_loaded,
         BOOL_OR(l.genre_loaded) AS genre_loaded,
         MAX(l.archived_fingerprint) AS archived_fingerprint,
         MAX(l.content_hash) AS content_hash,
         MAX(l.retracted_at) AS retracted_at
  FROM {{schema}}.musickpi_ledger l
  JOIN musickpi_stage_ledger k ON l.file_key = k.file_key AND l.fingerprint = k.fingerprint
  GROUP BY l.file_key, l.fingerprint
) o ON o.file_key = s.file_key AND o.fingerprint = s.fingerprint;

DELETE FROM {{schema}}.musickpi_ledger
USING musickpi_stage_ledger
WHERE musickpi_ledger.file_key = musickpi_stage_ledger.file_key
  AND musickpi_ledger.fingerprint = musickpi_stage_ledger.fingerprint;

INSERT INTO {{schema}}.musickpi_ledger (
  file_key, fingerprint, size, rows, run_id, loaded_at, archived_key, hourly_loaded, genre_loaded,
  archived_fingerprint, content_hash, retracted_at
)
SELECT file_key, fingerprint, size, rows, run_id, loaded_at, archived_key, hourly_loaded, genre_loaded,
       archived_fingerprint, content_hash, retracted_at
FROM musickpi_ledger_merged;

-- Dates are only ever added to a file's entry: the union of what every load saw.
DELETE FROM {{schema}}.musickpi_ledger_dates
USING musickpi_stage_ledger_dates
WHERE musickpi_ledger_dates.file_key = musickpi_stage_ledger_dates.file_key
  AND musickpi_ledger_dates.fingerprint = musickpi_stage_ledger_dates.fingerprint
  AND musickpi_ledger_dates.listen_date = musickpi_stage_ledger_dates.listen_date;

INSERT INTO {{schema}}.musickpi_ledger_dates (file_key, fingerprint, listen_date)
SELECT DISTINCT file_key, fingerprint, listen_date
FROM musickpi_stage_ledger_dates;
