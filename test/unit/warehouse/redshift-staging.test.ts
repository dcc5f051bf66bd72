// The stage files of a Redshift load: gzip CSV that keeps NULL and '' apart (NULL AS '\000',
// every string quoted), a manifest naming exactly the objects written, everything under a
// directory of the load's own below the staging prefix, removed after the load, and swept
// when a killed run left it.

import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { MkpiError } from '../../../lib/domain/errors.js';
import { HOURLY_COLUMNS } from '../../../lib/adapters/warehouse/core/kpi-columns.js';
import {
  manifestJson,
  parseStagingUri,
  stageDirName,
  stageField,
  stageTokenOf,
  Staging,
} from '../../../lib/adapters/warehouse/redshift/staging.js';
import { FakeRedshift, serverError } from './redshift-fake.js';
import { fullBatch, hourlyRows, mockS3, rejects, STAGING, warehouseOn } from './redshift-support.js';

/**
 * CSV as Redshift's COPY … CSV NULL AS '\000' reads it: RFC 4180 quoting, a field that is NUL
 * alone and unquoted is NULL, any other field a string (quoted or not).
 */
function readStageCsv(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let i = 0;
  while (i < text.length) {
    let value = '';
    let quoted = false;
    if (text[i] === '"') {
      quoted = true;
      i++;
      for (;;) {
        if (text[i] === '"' && text[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else value += text[i++];
      }
    } else {
      while (i < text.length && text[i] !== ',' && text[i] !== '\n') value += text[i++];
    }
    row.push(!quoted && value === '\u0000' ? null : value);
    if (text[i] === ',') i++;
    else if (text[i] === '\n' || i >= text.length) {
      rows.push(row);
      row = [];
      i++;
    }
  }
  return rows;
}

function putBodies(calls: { args: [{ input: { Key?: string; Body?: unknown } }] }[]): Map<string, Buffer> {
  return new Map(calls.map((c) => [c.args[0].input.Key!, Buffer.from(c.args[0].input.Body as Buffer | string)]));
}

describe('warehouse/redshift: stage files', () => {
  const { s3 } = mockS3();

  it('NULL is an unquoted NUL field, every string is quoted: NULL, "" and marker-looking strings stay apart', () => {
    assert.equal(stageField(null), '\u0000');
    assert.equal(stageField(undefined), '\u0000');
    assert.equal(stageField(''), '""');
    assert.equal(stageField('\\N'), '"\\N"');
    assert.equal(stageField('NULL'), '"NULL"');
    assert.equal(stageField('a,"b"\nc'), '"a,""b""\nc"');
    assert.equal(stageField(0.30000000000000004), '0.30000000000000004');
    assert.equal(stageField(42), '42');
    assert.equal(stageField(true), 't');
    assert.throws(
      () => stageField('a\u0000b'),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_INTERNAL',
    );
  });

  it('writes gzip CSV objects and a manifest naming exactly them; the rows read back as written', async () => {
    const staging = new Staging({ uri: STAGING, s3: { region: 'eu-west-1' } }, 200);
    const rows = [
      ...hourlyRows('2024-06-01', 8),
      { ...hourlyRows('2024-06-02', 1)[0], top_artist: '𝄞é "quoted", \\. \r\n', most_engaged_age_group: '' },
    ];
    const keys: string[] = [];
    let firstObjects = 0;
    const staged = await staging.writeTable('run-1-0123456789abcdef-1', 'hourly', rows, HOURLY_COLUMNS, keys, async () => {
      firstObjects++;
      // Called once the first object is stored, before the others.
      assert.equal(s3().commandCalls(PutObjectCommand).length, 1);
    });
    assert.equal(firstObjects, 1);
    assert.ok(staged && staged.objects > 1, 'split into several objects');
    const bodies = putBodies(s3().commandCalls(PutObjectCommand));
    assert.deepEqual([...bodies.keys()], keys);
    const manifestKey = 'musickpi/staging/run-1-0123456789abcdef-1/hourly.manifest';
    assert.equal(keys[keys.length - 1], manifestKey);
    assert.equal(staged.manifestUrl, `s3://stage-bucket/${manifestKey}`);
    const manifest = JSON.parse(bodies.get(manifestKey)!.toString('utf8'));
    const dataKeys = keys.slice(0, -1);
    assert.deepEqual(manifest, { entries: dataKeys.map((k) => ({ url: `s3://stage-bucket/${k}`, mandatory: true })) });
    for (const [i, k] of dataKeys.entries())
      assert.equal(k, `musickpi/staging/run-1-0123456789abcdef-1/hourly-${String(i).padStart(4, '0')}.csv.gz`);

    const read = dataKeys.flatMap((k) => readStageCsv(gunzipSync(bodies.get(k)!).toString('utf8')));
    const expected = rows.map((r) => HOURLY_COLUMNS.map((c) => (r[c] === null ? null : String(r[c]))));
    assert.deepEqual(read, expected);
    // NULL and '' are told apart; the header is absent (IGNOREHEADER would skip a line of every file).
    assert.deepEqual(read[0][4], null);
    assert.deepEqual(read[1][4], '');
    assert.deepEqual(read[8][7], '');
    assert.equal(read[8][4], '𝄞é "quoted", \\. \r\n');
    assert.match(gunzipSync(bodies.get(dataKeys[0])!).toString('utf8'), /^"2024-06-01",0,/);
  });

  it('no rows, no objects and no manifest', async () => {
    const staging = new Staging({ uri: STAGING });
    assert.equal(await staging.writeTable('d', 'genre', [], HOURLY_COLUMNS, []), undefined);
    assert.equal(s3().commandCalls(PutObjectCommand).length, 0);
    assert.equal(manifestJson([]), '{"entries":[]}');
  });

  it('staging URIs: a bucket and a prefix of safe characters; the prefix always ends with "/"', () => {
    assert.deepEqual(parseStagingUri('s3://lake/_musickpi/staging'), {
      bucket: 'lake',
      keyPrefix: '_musickpi/staging/',
      root: 's3://lake/_musickpi/staging/',
    });
    assert.deepEqual(parseStagingUri('s3://lake/'), { bucket: 'lake', keyPrefix: '', root: 's3://lake/' });
    assert.equal(stageDirName('2024-06-01T00:00:00Z/x', 'ab'.repeat(8), 3), '2024-06-01T00-00-00Z-x-abababababababab-3');
    assert.equal(stageTokenOf('run-1-0123456789abcdef-12/genre.manifest'), '0123456789abcdef');
    assert.equal(stageTokenOf('somebody-elses/file.csv'), undefined);
    assert.equal(stageTokenOf('run-1-0123456789abcdef-1/nested/file'), undefined);
  });

  it('sweeps a taken-over holder’s objects at once, others’ only when old, and never what is not a stage object', async () => {
    const now = Date.parse('2024-06-01T12:00:00Z');
    const old = new Date(now - 2 * 3600_000);
    const fresh = new Date(now - 60_000);
    s3()
      .on(ListObjectsV2Command, { ContinuationToken: undefined })
      .resolves({
        IsTruncated: true,
        NextContinuationToken: 'page2',
        Contents: [
          { Key: 'musickpi/staging/mine-1111111111111111-1/hourly-0000.csv.gz', LastModified: old },
          { Key: 'musickpi/staging/dead-2222222222222222-1/hourly-0000.csv.gz', LastModified: fresh },
        ],
      })
      .on(ListObjectsV2Command, { ContinuationToken: 'page2' })
      .resolves({
        Contents: [
          { Key: 'musickpi/staging/other-3333333333333333-1/genre.manifest', LastModified: old },
          { Key: 'musickpi/staging/other-4444444444444444-1/genre.manifest', LastModified: fresh },
          { Key: 'musickpi/staging/notes.txt', LastModified: old },
        ],
      });
    const staging = new Staging({ uri: STAGING });
    const n = await staging.sweep({ own: '1111111111111111', tokens: new Set(['2222222222222222']), olderThanMs: 3600_000, now });
    assert.equal(n, 2);
    assert.deepEqual(
      s3()
        .commandCalls(DeleteObjectCommand)
        .map((c) => c.args[0].input.Key),
      ['musickpi/staging/dead-2222222222222222-1/hourly-0000.csv.gz', 'musickpi/staging/other-3333333333333333-1/genre.manifest'],
    );
  });

  it('stage files that could not be removed after the load are tried again when the run lock is released', async () => {
    const fake = new FakeRedshift().initialised();
    const warnings: string[] = [];
    const wh = warehouseOn(fake, { warn: (l) => warnings.push(l) });
    const lock = await wh.acquireRunLock();
    s3()
      .on(DeleteObjectCommand)
      .rejectsOnce(
        Object.assign(new Error('We encountered an internal error'), { name: 'InternalError', $metadata: { httpStatusCode: 500 } }),
      )
      .resolves({});
    await wh.load(fullBatch());
    assert.equal(warnings.filter((w) => /could not remove the stage file/.test(w)).length, 1);
    const first = s3().commandCalls(DeleteObjectCommand)[0].args[0].input.Key;
    await lock.release();
    const tries = s3()
      .commandCalls(DeleteObjectCommand)
      .filter((c) => c.args[0].input.Key === first);
    assert.equal(tries.length, 2);
    await wh.close();
  });

  it('a load removes its stage objects after a failure as after a commit, and writes nothing outside its directory', async () => {
    const fake = new FakeRedshift().initialised();
    fake.failWith = (s) =>
      s.sql.startsWith('LOCK "reporting_schema".musickpi_run_lock,')
        ? serverError('57014', "Query (150) canceled on user's request")
        : undefined;
    const wh = warehouseOn(fake);
    const e = await rejects(wh.load(fullBatch()), 'MKPI_RETRY_LATER');
    assert.match(e.message, /canceled/);
    const put = s3()
      .commandCalls(PutObjectCommand)
      .map((c) => c.args[0].input.Key!);
    const removed = s3()
      .commandCalls(DeleteObjectCommand)
      .map((c) => c.args[0].input.Key!);
    assert.equal(put.length, 4);
    assert.deepEqual(removed.sort(), [...put].sort());
    const dirs = new Set(put.map((k) => k.split('/').slice(0, -1).join('/')));
    assert.equal(dirs.size, 1);
    assert.match([...dirs][0], /^musickpi\/staging\/run-1-[0-9a-f]{16}-1$/);
    // A second load gets a directory of its own.
    fake.failWith = undefined;
    await wh.load(fullBatch());
    const second = s3()
      .commandCalls(PutObjectCommand)
      .map((c) => c.args[0].input.Key!)
      .slice(4);
    assert.ok(second.every((k) => /\/run-1-[0-9a-f]{16}-2\//.test(k)));
    await wh.close();
  });
});
