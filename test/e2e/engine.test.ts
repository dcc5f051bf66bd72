// The warehouse engine through the CLI (docs/scale.md): `run --engine warehouse` and `plan` +
// `normalize --shard i/3` (in any order) + `run --engine warehouse --run-id` give the tables of
// the streaming engine on a messy lake, on PostgreSQL and on the strict Redshift stand-in (an S3
// lake, parts COPYed by manifest, nothing refused). And the CLI's peak memory with the warehouse
// engine stays within a fixed bound on a lake with a 1M-song, 1M-user catalogue.

import { expect } from 'chai';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { copyLake, runCli, tableRows } from '../support/cli.js';
import { uploadDir } from '../support/harness.js';
import { freshDatabase, testDatabaseUrl } from '../support/pg.js';
import { s3rverOptions, startRedshiftStandIn, type RedshiftStandIn } from '../support/redshift/index.js';
import { startS3, type TestS3 } from '../support/s3.js';

const PROBE = new URL('../support/rss-probe.mjs', import.meta.url).href;

async function reference(fixture: string) {
  const url = await freshDatabase('eng_ref');
  const r = await runCli(['run', '--lake', copyLake(fixture), '--warehouse', url, '--max-bad-rows', '1000000', '--json']);
  expect(r.code, r.stderr).to.equal(0);
  return { hourly: await tableRows(url, 'hourly_kpis'), genre: await tableRows(url, 'genre_level_kpis'), report: r.json };
}

const shuffledShards = [2, 0, 1];

describe('e2e: the warehouse engine', function () {
  this.timeout(300_000);

  it('PostgreSQL: run --engine warehouse, and plan + normalize 2/3, 0/3, 1/3 + run --run-id, equal the streaming engine', async () => {
    const ref = await reference('messy');
    const url = await freshDatabase('eng_pg');
    const one = await runCli([
      'run',
      '--engine',
      'warehouse',
      '--lake',
      copyLake('messy'),
      '--warehouse',
      url,
      '--max-bad-rows',
      '1000000',
      '--json',
    ]);
    expect(one.code, one.stderr).to.equal(0);
    expect(one.json.engine).to.equal('warehouse');
    expect(one.json.totals).to.deep.equal(ref.report.totals);
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(ref.hourly);
    expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(ref.genre);

    // A dry run that plans for itself keeps its scratch out of the lake.
    const dryLake = copyLake('messy');
    const dry = await runCli([
      'compute',
      '--engine',
      'warehouse',
      '--dry-run',
      '--lake',
      dryLake,
      '--warehouse',
      await freshDatabase('eng_dry'),
      '--max-bad-rows',
      '1000000',
      '--json',
    ]);
    expect(dry.code, dry.stderr).to.equal(0);
    expect(existsSync(join(dryLake, '_musickpi')), 'staging in the lake after a dry run').to.equal(false);

    const url3 = await freshDatabase('eng_pg3');
    const lake = copyLake('messy');
    const common = ['--lake', lake, '--run-id', 'scheduled__2024-06-02T00:00:00+00:00', '--json'];
    const plan = await runCli(['plan', ...common, '--warehouse', url3, '--shards', '3']);
    expect(plan.code, plan.stderr).to.equal(0);
    expect(plan.json.plan.shards).to.equal(3);
    // Before every shard is there, the run refuses and loads nothing.
    const early = await runCli(['run', '--engine', 'warehouse', ...common, '--warehouse', url3, '--max-bad-rows', '1000000']);
    expect(early.code, early.stderr).to.equal(75);
    expect(early.json.error.code).to.equal('MKPI_SHARDS_INCOMPLETE');
    expect(await tableRows(url3, 'hourly_kpis').catch(() => [])).to.deep.equal([]);
    for (const i of shuffledShards) {
      const n = await runCli(['normalize', ...common, '--shard', `${i}/3`]);
      expect(n.code, n.stderr).to.equal(0);
      expect(n.json.plan.shard.index).to.equal(i);
    }
    // The index from the scheduler's environment (a Kubernetes Indexed Job), run a second time.
    const again = await runCli(['normalize', ...common, '--shards', '3'], { env: { JOB_COMPLETION_INDEX: '1' } });
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json.plan.shard.index).to.equal(1);
    const run = await runCli(['run', '--engine', 'warehouse', ...common, '--warehouse', url3, '--max-bad-rows', '1000000']);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.json.totals).to.deep.equal(ref.report.totals);
    expect(await tableRows(url3, 'hourly_kpis')).to.deep.equal(ref.hourly);
    expect(await tableRows(url3, 'genre_level_kpis')).to.deep.equal(ref.genre);
  });

  describe('Redshift (the strict stand-in)', () => {
    let s3: TestS3;
    let rs: RedshiftStandIn;
    before(async () => {
      s3 = await startS3();
      rs = await startRedshiftStandIn({ backendUrl: testDatabaseUrl(), s3: s3rverOptions(s3.endpoint) });
    });
    after(async () => {
      await rs?.stop();
      await s3?.stop();
    });

    it('run --engine warehouse on a messy S3 lake, and plan + normalize + run --run-id: the streaming engine tables, nothing refused, staging emptied', async () => {
      const ref = await reference('messy');
      for (const [n, planned] of [
        [1, false],
        [2, true],
      ] as const) {
        const bucket = `eng-rs-${n}`;
        await s3.bucket(bucket);
        await uploadDir(s3.client, copyLake('messy'), bucket, 'music');
        const dbUrl = await freshDatabase(`eng_rs${n}`);
        const db = new URL(dbUrl).pathname.slice(1);
        const lakeArgs = ['--lake', `s3://${bucket}/music`, '--s3-endpoint', s3.endpoint, '--s3-force-path-style', '--json'];
        const whArgs = [
          '--warehouse',
          rs.url(db),
          '--staging',
          `s3://${bucket}/staging/`,
          '--iam-role',
          'arn:aws:iam::123456789012:role/musickpi-copy',
        ];
        const env = { ...s3.env, PGPASSWORD: rs.password };
        const refusedBefore = rs.refused.length;
        const copiesBefore = rs.copies.length;
        let r;
        if (!planned) {
          r = await runCli(['run', '--engine', 'warehouse', ...lakeArgs, ...whArgs, '--max-bad-rows', '1000000'], { env });
        } else {
          const id = ['--run-id', 'manual__2024-06-02T01:02:03+00:00'];
          const p = await runCli(['plan', ...lakeArgs, ...whArgs, ...id, '--shards', '3'], { env });
          expect(p.code, p.stderr).to.equal(0);
          for (const i of shuffledShards) {
            const x = await runCli(['normalize', ...lakeArgs, '--staging', `s3://${bucket}/staging/`, ...id, '--shards', '3'], {
              env: { ...env, AWS_BATCH_JOB_ARRAY_INDEX: String(i) },
            });
            expect(x.code, x.stderr).to.equal(0);
          }
          r = await runCli(['run', '--engine', 'warehouse', ...lakeArgs, ...whArgs, ...id, '--max-bad-rows', '1000000'], { env });
        }
        expect(r.code, r.stderr).to.equal(0);
        expect(rs.refused.slice(refusedBefore), 'statements the stand-in refused').to.deep.equal([]);
        expect(r.json.totals).to.deep.equal(ref.report.totals);
        expect(await tableRows(dbUrl, 'hourly_kpis')).to.deep.equal(ref.hourly);
        expect(await tableRows(dbUrl, 'genre_level_kpis')).to.deep.equal(ref.genre);
        const copies = rs.copies.slice(copiesBefore);
        expect(
          copies.some((c) => c.manifest && /listens/.test(c.table)),
          'listens parts COPYed by manifest',
        ).to.equal(true);
        const left = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'staging/' }));
        expect((left.Contents ?? []).map((o) => o.Key)).to.deep.equal([]);
      }
    });
  });

  it('peak memory: plan, normalize and run --engine warehouse stay within 200 MB on a 1M-song, 1M-user lake', async function () {
    this.timeout(600_000);
    const dir = mkdtempSync(join(tmpdir(), 'musickpi-bigcat-'));
    try {
      // MKPI_ENGINE_MEMORY_LISTENS=5000000 is the 5M-listen lake (docs/scale.md records its run).
      const listens = Number(process.env.MKPI_ENGINE_MEMORY_LISTENS ?? 400_000);
      await bigCatalogueLake(dir, 1_000_000, 1_000_000, listens);
      const url = await freshDatabase('eng_mem');
      const env = { NODE_OPTIONS: `--import=${PROBE}`, MKPI_TEST_RSS_PROBE: '1' };
      const peaks: Record<string, number> = {};
      const common = ['--lake', dir, '--run-id', 'mem-1', '--json'];
      const times: Record<string, number> = {};
      for (const [name, args] of [
        ['plan', ['plan', ...common, '--warehouse', url, '--shards', '2']],
        ['normalize 0/2', ['normalize', ...common, '--shard', '0/2']],
        ['normalize 1/2', ['normalize', ...common, '--shard', '1/2']],
        ['run', ['run', '--engine', 'warehouse', ...common, '--warehouse', url]],
      ] as const) {
        const t0 = performance.now();
        const r = await runCli([...args], { env });
        times[name] = Math.round(performance.now() - t0);
        expect(r.code, `${name}: ${r.stderr}`).to.equal(0);
        const kb = /MKPI_TEST_MAXRSS_KB=(\d+)/.exec(r.stderr)?.[1];
        expect(kb, `${name}: the probe's line`).to.not.equal(undefined);
        peaks[name] = Number(kb) / 1024;
      }
      console.log(
        `      peak RSS (MB), ${listens} listens: ${JSON.stringify(Object.fromEntries(Object.entries(peaks).map(([k, v]) => [k, Math.round(v)])))}; wall (ms): ${JSON.stringify(times)}`,
      );
      for (const [name, mb] of Object.entries(peaks)) expect(mb, `${name}: peak RSS ${mb.toFixed(0)} MB`).to.be.at.most(200);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A lake with a large catalogue, written as a stream (never held in memory). */
async function bigCatalogueLake(dir: string, songs: number, users: number, listens: number): Promise<void> {
  mkdirSync(join(dir, 'streams'), { recursive: true });
  const write = async (path: string, header: string, rows: number, row: (i: number) => string) => {
    const out = createWriteStream(path);
    out.write(header);
    let buf = '';
    for (let i = 0; i < rows; i++) {
      buf += row(i);
      if (buf.length > 1 << 16) {
        if (!out.write(buf)) await once(out, 'drain');
        buf = '';
      }
    }
    out.end(buf);
    await once(out, 'finish');
  };
  const genres = ['pop', 'rock', 'jazz', 'classical', 'hip-hop', 'metal', 'folk', 'blues'];
  await write(join(dir, 'songs.csv'), 'track_id,artists,track_genre,duration_ms\n', songs, (i) => {
    return `t${(i * 2654435761) % 4294967296}x${i},Artist ${i % 50_000};Feat ${i % 977},${genres[i % genres.length]},${180000 + (i % 60000)}\n`;
  });
  await write(
    join(dir, 'users.csv'),
    'user_id,user_age,user_country\n',
    users,
    (i) => `u${i}-${(i * 40503) % 65536},${18 + (i % 60)},C${i % 90}\n`,
  );
  let x = 12345;
  const next = () => (x = (x * 1103515245 + 12345) % 2147483648);
  for (const f of [0, 1]) {
    await write(join(dir, 'streams', `part-${f}.csv`), 'user_id,track_id,listen_time\n', listens / 2, () => {
      const s = next() % songs;
      const u = next() % users;
      const sec = next() % 86400;
      const hh = String(Math.floor(sec / 3600)).padStart(2, '0');
      const mm = String(Math.floor((sec % 3600) / 60)).padStart(2, '0');
      const ss = String(sec % 60).padStart(2, '0');
      return `u${u}-${(u * 40503) % 65536},t${(s * 2654435761) % 4294967296}x${s},2024-06-0${1 + f} ${hh}:${mm}:${ss}\n`;
    });
  }
}
