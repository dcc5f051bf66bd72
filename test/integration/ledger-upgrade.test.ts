// The ledger's archived_fingerprint column (the archived copy's own fingerprint, see
// lib/archive.ts): recorded by markArchived, read back by readLedger, and added by init() to a
// ledger created before it existed.

import { expect } from 'chai';

import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { freshDatabase } from '../support/pg.js';
import { sql } from '../support/harness.js';

describe('ledger: archived copy fingerprint', function () {
  this.timeout(60_000);

  it('markArchived records the copy fingerprint; readLedger returns it; a later load keeps it', async () => {
    const url = await freshDatabase('ledger_fp');
    const wh = new PostgresWarehouse(url, { schema: 'reporting_schema' });
    try {
      await wh.init();
      const entry = {
        fileKey: 'streams/a.csv',
        fingerprint: 'etag-a',
        size: 10,
        rows: 1,
        dates: ['2024-06-01'],
        tables: ['hourly' as const],
        runId: 'r1',
        archivedKey: null,
      };
      await wh.load({ runId: 'r1', hourly: { dates: ['2024-06-01'], rows: [] }, ledger: [entry] });
      expect((await wh.readLedger())[0].archivedFingerprint).to.equal(undefined);
      await wh.markArchived('streams/a.csv', 'etag-a', 'streams/archived/a.csv', 'etag-copy-2');
      // A later load of the same file (the other table) must not forget where and what the copy is.
      await wh.load({ runId: 'r2', genre: { dates: ['2024-06-01'], rows: [] }, ledger: [{ ...entry, tables: ['genre'], runId: 'r2' }] });
      const [e] = await wh.readLedger();
      expect(e).to.include({ archivedKey: 'streams/archived/a.csv', archivedFingerprint: 'etag-copy-2' });
      expect(e.tables).to.deep.equal(['hourly', 'genre']);
    } finally {
      await wh.close();
    }
  });

  it('init() adds the column to a ledger made before it, keeping its rows', async () => {
    const url = await freshDatabase('ledger_upgrade');
    const wh = new PostgresWarehouse(url, { schema: 'reporting_schema' });
    try {
      await wh.init();
      await sql(url, 'alter table reporting_schema.musickpi_ledger drop column archived_fingerprint');
      await sql(
        url,
        `insert into reporting_schema.musickpi_ledger (file_key, fingerprint, size, rows, run_id, loaded_at, archived_key, hourly_loaded, genre_loaded)
         values ('streams/a.csv', 'e', 10, 1, 'old', now(), 'streams/archived/a.csv', true, true)`,
      );
      expect(await wh.isInitialised()).to.equal(true);
      // Readable as it is (a dry run does not upgrade it)...
      expect((await wh.readLedger())[0])
        .to.include({ archivedKey: 'streams/archived/a.csv' })
        .and.not.have.property('archivedFingerprint');
      // ...and upgraded by init().
      await wh.init();
      const [e] = await wh.readLedger();
      expect(e)
        .to.include({ fileKey: 'streams/a.csv', archivedKey: 'streams/archived/a.csv' })
        .and.not.have.property('archivedFingerprint');
      await wh.markArchived('streams/a.csv', 'e', 'streams/archived/a.csv', 'e2');
      expect((await wh.readLedger())[0].archivedFingerprint).to.equal('e2');
    } finally {
      await wh.close();
    }
  });
});
