// Pure parts of the PostgreSQL warehouse: identifiers, SQL templates, CSV for COPY, type
// parsing, error classification, redaction. No server needed.

import assert from 'node:assert/strict';
import { MkpiError } from '../../../lib/domain/errors.js';
import { checkBatch } from '../../../lib/adapters/warehouse/core/batch.js';
import { describeUrl } from '../../../lib/adapters/warehouse/core/connection.js';
import { classifyPgError, isConnectionLoss } from '../../../lib/adapters/warehouse/core/errors.js';
import { GENRE_COLUMNS, HOURLY_COLUMNS } from '../../../lib/adapters/warehouse/core/kpi-columns.js';
import { mergeLedgerEntries } from '../../../lib/adapters/warehouse/core/ledger.js';
import { parseInt8, parseNumeric } from '../../../lib/adapters/warehouse/core/type-parsers.js';
import { csvChunks, csvField } from '../../../lib/adapters/warehouse/postgres/copy.js';
import { PostgresWarehouse } from '../../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { quoteSchema, renderSql } from '../../../lib/adapters/warehouse/postgres/sql.js';
import type { HourlyRow } from '../../../lib/domain/kpi.js';

function pgError(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code });
}

describe('warehouse/postgres (unit)', () => {
  describe('quoteSchema', () => {
    it('quotes valid identifiers', () => {
      assert.equal(quoteSchema('reporting_schema'), '"reporting_schema"');
      assert.equal(quoteSchema('_x9'), '"_x9"');
      assert.equal(quoteSchema('Mixed'), '"Mixed"');
      assert.equal(quoteSchema('a'.repeat(63)), `"${'a'.repeat(63)}"`);
    });
    it('rejects anything else with MKPI_CONFIG', () => {
      for (const bad of ['', '9a', 'a-b', 'a b', 'a"b', 'a;b', 'a.b', 'a'.repeat(64), 'ünï', 'x\n']) {
        assert.throws(
          () => quoteSchema(bad),
          (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG',
          bad,
        );
      }
    });
  });

  describe('renderSql', () => {
    it('replaces every {{schema}} with the quoted name and leaves no placeholder', () => {
      for (const name of ['init', 'stage', 'merge-hourly', 'merge-genre', 'upsert-ledger', 'upsert-ledger-dates'] as const) {
        const text = renderSql(name, 'reporting_schema');
        assert.ok(!text.includes('{{'), name);
      }
      const init = renderSql('init', 'kpi');
      assert.match(init, /CREATE SCHEMA IF NOT EXISTS "kpi";/);
      assert.match(init, /CREATE TABLE IF NOT EXISTS "kpi"\.hourly_kpis/);
      assert.match(init, /PRIMARY KEY \(listen_date, listen_hour\)/);
      assert.match(init, /PRIMARY KEY \(listen_date, track_genre\)/);
      assert.match(init, /PRIMARY KEY \(file_key, fingerprint\)/);
      assert.match(init, /PRIMARY KEY \(file_key, fingerprint, listen_date\)/);
      assert.doesNotMatch(init, /\[\]/, 'no array columns (Redshift has none)');
      assert.match(renderSql('merge-hourly', 'kpi'), /DELETE FROM "kpi"\.hourly_kpis[\s\S]*INSERT INTO "kpi"\.hourly_kpis/);
      assert.match(renderSql('merge-genre', 'kpi'), /DELETE FROM "kpi"\.genre_level_kpis[\s\S]*INSERT INTO "kpi"\.genre_level_kpis/);
    });
    it('validates the schema name', () => {
      assert.throws(() => renderSql('init', 'x"; DROP TABLE y; --'), /invalid warehouse schema/);
    });
  });

  describe('CSV for COPY', () => {
    it('writes NULL unquoted-empty and every string quoted', () => {
      assert.equal(csvField(null), '');
      assert.equal(csvField(undefined), '');
      assert.equal(csvField(''), '""');
      assert.equal(csvField('a,b'), '"a,b"');
      assert.equal(csvField('say "hi"'), '"say ""hi"""');
      assert.equal(csvField('line\nbreak\r\n'), '"line\nbreak\r\n"');
      assert.equal(csvField('\\.'), '"\\."');
      assert.equal(csvField('2024-06-01'), '"2024-06-01"');
    });
    it('writes floats in the shortest form that round-trips', () => {
      for (const x of [0.1 + 0.2, 1 / 3, 1e-300, 123456789.123456789, -0.5, 5e21, 2 ** 53 + 2]) {
        assert.equal(Number(csvField(x)), x);
      }
      assert.equal(csvField(0.30000000000000004), '0.30000000000000004');
      assert.equal(csvField(3), '3');
      assert.equal(csvField(NaN), 'NaN');
      assert.equal(csvField(Infinity), 'Infinity');
      assert.equal(csvField(true), 't');
      assert.equal(csvField(10n), '10');
    });
    it('chunks rows in column order, each line newline-terminated', () => {
      const row: HourlyRow = {
        most_engaged_age_group: '18-25',
        listen_date: '2024-06-01',
        listen_hour: 0,
        unique_listeners: 1,
        listen_counts: 2,
        top_artist: null,
        avg_sessions_per_user: 2,
        diversity_index: 0.5,
      };
      assert.deepEqual([...csvChunks([row], HOURLY_COLUMNS)], ['"2024-06-01",0,1,2,,2,0.5,"18-25"\n']);
      const many = Array.from({ length: 5000 }, () => row);
      const chunks = [...csvChunks(many, HOURLY_COLUMNS)];
      assert.ok(chunks.length > 1);
      assert.equal(chunks.join('').split('\n').length - 1, 5000);
      assert.deepEqual([...csvChunks([], GENRE_COLUMNS)], []);
    });
  });

  describe('type parsers', () => {
    it('int8: numbers while exact, strings beyond 2^53', () => {
      assert.equal(parseInt8('42'), 42);
      assert.equal(parseInt8('-9007199254740991'), -9007199254740991);
      assert.equal(parseInt8('9007199254740993'), '9007199254740993');
    });
    it('numeric: numbers, except integers that would lose digits', () => {
      assert.equal(parseNumeric('2.5000000000000000'), 2.5);
      assert.equal(parseNumeric('12'), 12);
      assert.equal(parseNumeric('NaN'), NaN);
      assert.equal(parseNumeric('123456789012345678901234567890'), '123456789012345678901234567890');
    });
  });

  describe('error classification', () => {
    it('maps connection failures to MKPI_WAREHOUSE_UNAVAILABLE', () => {
      for (const e of [
        pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'),
        pgError('ENOTFOUND', 'getaddrinfo ENOTFOUND nowhere'),
        pgError('57P01', 'terminating connection due to administrator command'),
        pgError('08006'),
        pgError('08P01'),
        new Error('Connection terminated unexpectedly'),
        new Error('Connection terminated due to connection timeout'),
        Object.assign(new AggregateError([pgError('ECONNREFUSED')], ''), { code: 'ECONNREFUSED' }),
      ]) {
        assert.equal(classifyPgError(e), 'MKPI_WAREHOUSE_UNAVAILABLE', String(e));
        assert.equal(isConnectionLoss(e), true);
      }
    });
    it('maps conflicts and lock timeouts to MKPI_RETRY_LATER', () => {
      for (const code of ['40001', '40P01', '55P03']) assert.equal(classifyPgError(pgError(code)), 'MKPI_RETRY_LATER');
    });
    it('maps bad credentials / database to MKPI_CONFIG, and leaves the rest alone', () => {
      assert.equal(classifyPgError(pgError('28P01')), 'MKPI_CONFIG');
      assert.equal(classifyPgError(pgError('3D000')), 'MKPI_CONFIG');
      assert.equal(classifyPgError(pgError('23505')), undefined);
      assert.equal(classifyPgError(new Error('boom')), undefined);
    });
  });

  describe('description and secrets', () => {
    it('describeUrl drops the password and the query string', () => {
      const d = describeUrl('postgresql://alice:s3cr%40t@db.example.com:6543/kpis?sslmode=require&password=other');
      assert.equal(d.description, 'postgresql://alice@db.example.com:6543/kpis');
      assert.ok(d.secrets.includes('s3cr%40t'));
      assert.ok(d.secrets.includes('s3cr@t'));
      assert.ok(d.secrets.includes('other'));
    });
    it('a warehouse description never holds the password', () => {
      const w = new PostgresWarehouse('postgres://bob:hunter2@localhost/db', { schema: 'reporting_schema' });
      assert.equal(w.description, 'postgres://bob@localhost/db');
      const env = new PostgresWarehouse('', { schema: 's', config: { host: 'h', port: 1, user: 'u', password: 'pw', database: 'd' } });
      assert.equal(env.description, 'postgresql://u@h:1/d');
    });
    it('error messages are scrubbed of the password', async () => {
      const w = new PostgresWarehouse('postgresql://bob:hunter2@127.0.0.1:1/db', { schema: 'reporting_schema', connectTimeoutMs: 2000 });
      await assert.rejects(w.isInitialised(), (e: unknown) => {
        assert.ok(e instanceof MkpiError);
        assert.equal(e.code, 'MKPI_WAREHOUSE_UNAVAILABLE');
        assert.ok(!`${e.message}${e.hint}${e.stack}`.includes('hunter2'));
        return true;
      });
      await w.close();
    });
  });

  describe('batches', () => {
    it('mergeLedgerEntries folds duplicate files into one entry (union of tables and dates)', () => {
      const base = { fileKey: 'a', fingerprint: 'f', size: 1, rows: 1, runId: 'r', archivedKey: null };
      const merged = mergeLedgerEntries([
        { ...base, dates: ['2024-06-01'], tables: ['hourly'] },
        { ...base, fingerprint: 'g', dates: [], tables: ['genre'] },
        { ...base, dates: ['2024-06-02', '2024-06-01'], tables: ['genre'] },
      ]);
      assert.equal(merged.length, 2);
      assert.deepEqual(merged[0].dates, ['2024-06-01', '2024-06-02']);
      assert.deepEqual(merged[0].tables, ['hourly', 'genre']);
    });
    it('checkBatch refuses rows outside the covered dates and malformed dates', () => {
      const row = { listen_date: '2024-06-02' } as HourlyRow;
      assert.throws(
        () => checkBatch({ runId: 'r', hourly: { dates: ['2024-06-01'], rows: [row] }, ledger: [] }),
        /outside the covered dates/,
      );
      assert.throws(() => checkBatch({ runId: 'r', hourly: { dates: ['June 1'], rows: [] }, ledger: [] }), /invalid date/);
      checkBatch({ runId: 'r', hourly: { dates: ['2024-06-02'], rows: [row] }, ledger: [] });
    });
  });
});
