// Concurrency (issue 4, spec §7–§8): two runs started together on the same lake and warehouse —
// one does the work, the other exits 75 (MKPI_LOCKED) at once, saying so; and archiving racing
// new or replaced files landing in streams/: a file that no committed load read is never
// archived. MKPI_TEST_PAUSE holds the winner / the archive step at a known point, so the race is
// played out the same way every time.

import { expect } from 'chai';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { GetObjectCommand } from '@aws-sdk/client-s3';

import { copyLake, REPO, runCli, spawnCli, type CliChild, type CliResult } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { startS3, type TestS3 } from '../support/s3.js';
import {
  NO_WAREHOUSE_ENV,
  processesMentioning,
  snapshotLocalLake,
  snapshotS3Lake,
  snapshotWarehouse,
  uploadDir,
} from '../support/harness.js';

const NEW_FILE = 'user_id,track_id,listen_time\nu2,t2,2024-06-01 11:30:00\nu1,t3,2024-06-03 08:00:00\n';
const REPLACEMENT = 'user_id,track_id,listen_time\nu3,t1,2024-06-09 09:00:00\nu3,t2,2024-06-09 09:10:00\n';

/**
 * Waits for the first of two children to exit while the other pauses at `point`. The winner
 * holds the lock there until resume(): a loser waiting for the lock's release would never exit,
 * so its exit here shows it did not wait (without a wall-clock bound a busy machine could break).
 */
async function race(a: CliChild, b: CliChild, point: string) {
  const settled = await Promise.race([a.done.then((r) => ({ loser: a, winner: b, r })), b.done.then((r) => ({ loser: b, winner: a, r }))]);
  await settled.winner.paused(point, 30_000);
  return settled;
}

describe('e2e: concurrent runs and archive races', function () {
  this.timeout(180_000);
  const temps: string[] = [];
  let s3: TestS3;

  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3?.stop();
    for (const d of temps) rmSync(d, { recursive: true, force: true });
  });

  const lakeCopy = () => {
    const l = copyLake('tiny');
    temps.push(l);
    return l;
  };

  it('two runs started together on one lake and warehouse: one loads, the other exits 75 promptly with MKPI_LOCKED; the tables equal one clean run', async () => {
    const lake = lakeCopy();
    const db = await freshDatabase('conc');
    const args = ['run', '--lake', lake, '--warehouse', db, '--json'];
    const env = { ...NO_WAREHOUSE_ENV, MKPI_TEST_PAUSE: 'after-lock' };
    const a = spawnCli(args, { env });
    const b = spawnCli(args, { env });
    const { winner, r } = await race(a, b, 'after-lock');

    expect(r.code, r.stderr).to.equal(75);
    expect(r.json.error.code).to.equal('MKPI_LOCKED');
    expect(r.json.error.message).to.match(/another musickpi run is loading schema reporting_schema/);
    expect(r.json.error.hint).to.match(/another musickpi run holds the lock \(backend pid \d+/);
    expect(r.json.loaded).to.equal(false);

    winner.resume();
    const w = await winner.done;
    expect(w.code, w.stderr).to.equal(0);
    expect(w.json.loaded).to.equal(true);

    const once = await freshDatabase('conc_ref');
    const ref = lakeCopy();
    expect((await runCli(['run', '--lake', ref, '--warehouse', once, '--quiet'], { env: NO_WAREHOUSE_ENV })).code).to.equal(0);
    expect(await snapshotWarehouse(db)).to.deep.equal(await snapshotWarehouse(once));
    expect(snapshotLocalLake(lake, { skip: ['rejects/'] })).to.deep.equal(snapshotLocalLake(ref, { skip: ['rejects/'] }));
  });

  it('two runs on one embedded warehouse (same --home): the second exits 75 with MKPI_LOCKED, and no server is left behind', async () => {
    const lake = lakeCopy();
    const home = mkdtempSync(join(tmpdir(), 'mkpi-conc-home-'));
    chmodSync(home, 0o755);
    temps.push(home);
    const args = ['run', '--lake', lake, '--home', home, '--json'];
    const env = { ...NO_WAREHOUSE_ENV, MKPI_TEST_PAUSE: 'after-lock' };
    const a = spawnCli(args, { env });
    const b = spawnCli(args, { env });
    const { winner, r } = await race(a, b, 'after-lock');
    expect(r.code, r.stderr).to.equal(75);
    expect(r.stdout + r.stderr).to.contain('MKPI_LOCKED');
    winner.resume();
    const w = await winner.done;
    expect(w.code, w.stderr).to.equal(0);
    expect(w.json.archived).to.have.length(2);
    expect(processesMentioning(join(home, 'pg'))).to.deep.equal([]);
  });

  // --- archive racing files landing in streams/ ------------------------------------------------

  interface RaceLake {
    args: string[];
    env: Record<string, string | undefined>;
    put(key: string, body: string): Promise<void>;
    keys(): Promise<string[]>;
    text(key: string): Promise<string>;
  }

  async function raceLake(kind: 'local' | 's3'): Promise<RaceLake> {
    if (kind === 'local') {
      const dir = lakeCopy();
      return {
        args: ['--lake', dir],
        env: {},
        async put(key, body) {
          mkdirSync(join(dir, 'streams'), { recursive: true });
          writeFileSync(join(dir, key), body);
        },
        keys: async () => Object.keys(snapshotLocalLake(dir, { skip: ['rejects/'] })).filter((k) => k.startsWith('streams/')),
        text: async (key) => readFileSync(join(dir, key), 'utf8'),
      };
    }
    const bucket = `race-${Math.random().toString(36).slice(2, 10)}`;
    await s3.bucket(bucket);
    await uploadDir(s3.client, join(REPO, 'fixtures', 'tiny'), bucket, 'lake');
    return {
      args: ['--lake', `s3://${bucket}/lake`, '--s3-endpoint', s3.endpoint, '--s3-force-path-style'],
      env: s3.env,
      put: (key, body) => s3.putObject(bucket, `lake/${key}`, body),
      keys: async () =>
        Object.keys(await snapshotS3Lake(s3.client, bucket, 'lake', { skip: ['rejects/'] })).filter((k) => k.startsWith('streams/')),
      async text(key) {
        const r = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: `lake/${key}` }));
        return r.Body!.transformToString();
      },
    };
  }

  for (const kind of ['local', 's3'] as const) {
    it(`${kind}: \`archive\` racing a new file landing in streams/ never archives it; the next run loads it`, async () => {
      const lake = await raceLake(kind);
      const db = await freshDatabase('race');
      const cli = (cmd: string, env: Record<string, string> = {}): Promise<CliResult> =>
        runCli([cmd, ...lake.args, '--warehouse', db, '--json'], { env: { ...NO_WAREHOUSE_ENV, ...lake.env, ...env } });
      expect((await cli('compute')).code).to.equal(0);

      const archiving = spawnCli(['archive', ...lake.args, '--warehouse', db, '--json'], {
        env: { ...NO_WAREHOUSE_ENV, ...lake.env, MKPI_TEST_PAUSE: 'after-archive-list' },
      });
      await archiving.paused('after-archive-list');
      await lake.put('streams/c.csv', NEW_FILE);
      archiving.resume();
      const r = await archiving.done;
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json.archived.map((f: { from: string }) => f.from)).to.deep.equal(['streams/a.csv', 'streams/b.csv']);
      expect(await lake.keys()).to.deep.equal(['streams/archived/a.csv', 'streams/archived/b.csv', 'streams/c.csv']);

      const next = await cli('run');
      expect(next.code, next.stderr).to.equal(0);
      expect(next.json.files.filter((f: { status: string }) => f.status === 'read').map((f: { name: string }) => f.name)).to.deep.equal([
        'streams/c.csv',
      ]);
      expect(await lake.keys()).to.deep.equal(['streams/archived/a.csv', 'streams/archived/b.csv', 'streams/archived/c.csv']);

      // Tables as one clean run over a, b and c.
      const tpl = copyLake('tiny');
      temps.push(tpl);
      writeFileSync(join(tpl, 'streams', 'c.csv'), NEW_FILE);
      const once = await freshDatabase('race_ref');
      expect((await runCli(['run', '--lake', tpl, '--warehouse', once, '--quiet'], { env: NO_WAREHOUSE_ENV })).code).to.equal(0);
      const [got, want] = [await snapshotWarehouse(db), await snapshotWarehouse(once)];
      expect(got.hourly).to.deep.equal(want.hourly);
      expect(got.genre).to.deep.equal(want.genre);
    });

    it(`${kind}: a loaded file replaced by a newer one of the same name while \`run\` archives: the newer one is not archived, stays, and is loaded next`, async () => {
      const lake = await raceLake(kind);
      const db = await freshDatabase('race');
      const running = spawnCli(['run', ...lake.args, '--warehouse', db, '--json'], {
        env: { ...NO_WAREHOUSE_ENV, ...lake.env, MKPI_TEST_PAUSE: 'after-archive-list' },
      });
      await running.paused('after-archive-list');
      await lake.put('streams/b.csv', REPLACEMENT);
      running.resume();
      const r = await running.done;
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json.loaded).to.equal(true);
      expect(r.json.archived.map((f: { from: string }) => f.from)).to.deep.equal(['streams/a.csv']);
      expect(r.json.warnings.join('\n')).to.match(/streams\/b\.csv not archived: it was replaced by a newer file/);
      expect(await lake.keys()).to.deep.equal(['streams/archived/a.csv', 'streams/b.csv']);
      expect(await lake.text('streams/b.csv')).to.equal(REPLACEMENT);

      const next = await runCli(['run', ...lake.args, '--warehouse', db, '--json'], { env: { ...NO_WAREHOUSE_ENV, ...lake.env } });
      expect(next.code, next.stderr).to.equal(0);
      expect(next.json.datesRecomputed.hourly).to.deep.equal(['2024-06-09']);
      expect(await lake.keys()).to.deep.equal(['streams/archived/a.csv', 'streams/archived/b.csv']);
      expect(await lake.text('streams/archived/b.csv')).to.equal(REPLACEMENT);
    });
  }
});
