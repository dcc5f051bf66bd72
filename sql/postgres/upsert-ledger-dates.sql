-- Dates are only ever added to a file's entry: the union of what every load saw.
INSERT INTO {{schema}}.musickpi_ledger_dates (file_key, fingerprint, listen_date)
SELECT DISTINCT d.file_key, d.fingerprint, d.listen_date
FROM unnest($1::text[], $2::text[], $3::date[]) AS d(file_key, fingerprint, listen_date)
ON CONFLICT (file_key, fingerprint, listen_date) DO NOTHING;
