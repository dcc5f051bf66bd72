// The run report (lib/pipeline/report.ts): its empty shape, errors with their code and no
// secret, and run ids.

import { expect } from 'chai';

import { MkpiError } from '../../../lib/domain/errors.js';
import { REJECT_REASONS } from '../../../lib/domain/reject-reasons.js';
import { newReport, newRunId, setError, zeroReasons } from '../../../lib/pipeline/report.js';

describe('pipeline/report', () => {
  it('starts failed-until-proven-ok, with every count at zero and the lake root redacted', () => {
    const r = newReport('run', 'r1', 'postgresql://me:secret@host/db', ['hourly'], true);
    expect(r).to.deep.include({
      command: 'run',
      runId: 'r1',
      ok: false,
      error: null,
      warehouse: null,
      kpis: ['hourly'],
      dryRun: true,
      loaded: false,
      rejectsOutput: null,
    });
    expect(r.lake).to.not.contain('secret');
    expect(r.files).to.deep.equal([]);
    expect(r.archived).to.deep.equal([]);
    expect(r.datesRecomputed).to.deep.equal({ hourly: [], genre: [] });
    expect(r.rowsWritten).to.deep.equal({ hourly_kpis: 0, genre_level_kpis: 0 });
    expect(r.totals).to.deep.include({ files: 0, bytes: 0, rowsRead: 0, completeRows: 0, badRows: 0, orphanRows: 0 });
    expect(r.totals.rejected).to.deep.equal(zeroReasons());
  });

  it('zeroReasons has every reject reason at 0, and a fresh object each time', () => {
    const z = zeroReasons();
    expect(Object.keys(z)).to.deep.equal([...REJECT_REASONS]);
    expect(Object.values(z).every((n) => n === 0)).to.equal(true);
    z.malformed = 3;
    expect(zeroReasons().malformed).to.equal(0);
  });

  it('setError records the code, message and hint, with secrets redacted, and marks the report failed', () => {
    const r = newReport('compute', 'r1', '/lake', ['hourly', 'genre'], false);
    r.ok = true;
    setError(
      r,
      new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', 'cannot reach postgresql://u:hunter2@db:5432/x', { hint: 'check postgres://a:b@c/d' }),
    );
    expect(r.ok).to.equal(false);
    expect(r.error?.code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect(r.error?.message).to.not.contain('hunter2');
    expect(r.error?.hint).to.not.contain(':b@');
    setError(r, new MkpiError('MKPI_INTERNAL', 'x'));
    expect(r.error).to.deep.equal({ code: 'MKPI_INTERNAL', message: 'x', hint: null, stage: null });
    setError(r, new MkpiError('MKPI_INTERNAL', 'x'), 'load');
    expect(r.error?.stage).to.equal('load');
  });

  it('newRunId is a UTC timestamp and a random suffix, sortable by time', () => {
    const id = newRunId(new Date('2024-06-01T10:05:09.123Z'));
    expect(id).to.match(/^20240601T100509Z-[a-z0-9]{1,6}$/);
    expect(newRunId(new Date('2024-06-01T10:05:09Z'))).to.not.equal(newRunId(new Date('2024-06-01T10:05:09Z')));
    expect(newRunId(new Date('2024-06-02T00:00:00Z')) > id).to.equal(true);
  });
});
