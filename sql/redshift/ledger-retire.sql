-- Twin rows deleted, with their dates.
DELETE FROM {{schema}}.musickpi_ledger_dates
USING musickpi_stage_retire
WHERE musickpi_ledger_dates.file_key = musickpi_stage_retire.file_key
  AND musickpi_ledger_dates.fingerprint = musickpi_stage_retire.fingerprint;

DELETE FROM {{schema}}.musickpi_ledger
USING musickpi_stage_retire
WHERE musickpi_ledger.file_key = musickpi_stage_retire.file_key
  AND musickpi_ledger.fingerprint = musickpi_stage_retire.fingerprint;
