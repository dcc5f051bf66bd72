-- Retracted files stay in the ledger, marked: they say what was taken out and when.
UPDATE {{schema}}.musickpi_ledger
SET retracted_at = GETDATE()
FROM musickpi_stage_retract
WHERE musickpi_ledger.file_key = musickpi_stage_retract.file_key
  AND musickpi_ledger.fingerprint = musickpi_stage_retract.fingerprint;
