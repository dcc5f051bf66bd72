// A file counts once (docs/contract.md, "What identifies a file"): the same key and the same
// bytes are the same file, whatever its fingerprint (mtime, ETag) says.
import { expect } from 'chai';
import { copyFileSync, existsSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyLake, expectTable, queryRows, REPO, runCli, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { sql } from '../support/harness.js';
import { readFileSync } from 'node:fs';

const fixture = (p: string) => readFileSync(join(REPO, 'fixtures', p), 'utf8');
const ls = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);
const LATE = 'user_id,track_id,listen_time\nu2,t2,2024-06-01 11:30:00\nu1,t3,2024-06-03 08:00:00\n';

async function ledger(url: string) {
  return queryRows(
    url,
    'select file_key, fingerprint, archived_key, content_hash from reporting_schema.musickpi_ledger order by file_key, fingerprint',
  );
}

/** The tables a single run over `files` (written into a copy of the tiny lake) produces. */
async function singleRun(extra: Record<string, string> = {}) {
  const url = await freshDatabase();
  const lake = copyLake('tiny');
  for (const [name, body] of Object.entries(extra)) writeFileSync(join(lake, 'streams', name), body);
  const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet']);
  expect(r.code, r.stderr).to.equal(0);
  return { hourly: await tableRows(url, 'hourly_kpis'), genre: await tableRows(url, 'genre_level_kpis') };
}

describe('e2e: a re-delivered identical file counts once', function () {
  this.timeout(180_000);

  it('plain cp of an archived file back into streams/: already_loaded, removed, one ledger row; a later late file is exact', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
    const before = await ledger(url);
    expect(before).to.have.length(2);
    expect(before.every((e) => /^[0-9a-f]{64}$/.test(String(e.content_hash)))).to.equal(true);

    copyFileSync(join(lake, 'streams', 'archived', 'a.csv'), join(lake, 'streams', 'a.csv'));
    const future = new Date(Date.now() + 60_000);
    utimesSync(join(lake, 'streams', 'a.csv'), future, future);
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.loaded).to.equal(false);
    expect(r.json.files.map((f: any) => [f.name, f.status])).to.deep.equal([['streams/a.csv', 'already_loaded']]);
    expect(r.json.totals.rowsRead).to.equal(0);
    expectTable(await tableRows(url, 'hourly_kpis'), fixture('tiny/expected/hourly_kpis.csv'));
    expectTable(await tableRows(url, 'genre_level_kpis'), fixture('tiny/expected/genre_level_kpis.csv'));
    // The archive already holds those bytes: the copy is removed, nothing is added to the archive.
    expect(ls(join(lake, 'streams'))).to.deep.equal(['archived']);
    expect(ls(join(lake, 'streams', 'archived'))).to.deep.equal(['a.csv', 'b.csv']);
    expect(await ledger(url)).to.deep.equal(before);

    writeFileSync(join(lake, 'streams', 'c.csv'), LATE);
    // Without saved states, so that a.csv is looked for and read again.
    const late = await runCli(['run', '--lake', lake, '--warehouse', url, '--json', '--no-date-state']);
    expect(late.code, late.stderr).to.equal(0);
    expect(late.json.reread.map((f: any) => f.name)).to.deep.equal(['streams/archived/a.csv']);
    const once = await singleRun({ 'c.csv': LATE });
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(once.hourly);
    expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(once.genre);
    expect(await ledger(url)).to.have.length(3);
  });

  it('a touched file (loaded, not yet archived) is already_loaded, then archived under its ledger row', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['compute', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
    const future = new Date(Date.now() + 120_000);
    utimesSync(join(lake, 'streams', 'a.csv'), future, future);
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.loaded).to.equal(false);
    expect(r.json.files.map((f: any) => f.status)).to.deep.equal(['already_loaded', 'already_loaded']);
    expect(r.json.archived.map((a: any) => a.to)).to.deep.equal(['streams/archived/a.csv', 'streams/archived/b.csv']);
    const rows = await ledger(url);
    expect(rows.map((e) => e.archived_key)).to.deep.equal(['streams/archived/a.csv', 'streams/archived/b.csv']);
    expectTable(await tableRows(url, 'hourly_kpis'), fixture('tiny/expected/hourly_kpis.csv'));

    // And it is still found for a late date, by its content.
    writeFileSync(join(lake, 'streams', 'c.csv'), LATE);
    expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet', '--no-date-state'])).code).to.equal(0);
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal((await singleRun({ 'c.csv': LATE })).hourly);
  });

  it('a touched file that is still in streams/ after compute is found by content for a late date', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['compute', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
    const future = new Date(Date.now() + 120_000);
    utimesSync(join(lake, 'streams', 'a.csv'), future, future);
    writeFileSync(join(lake, 'streams', 'c.csv'), LATE);
    const r = await runCli(['compute', '--lake', lake, '--warehouse', url, '--json', '--no-date-state']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.reread.map((f: any) => f.name)).to.deep.equal(['streams/a.csv']);
    const once = await singleRun({ 'c.csv': LATE });
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(once.hourly);
    expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(once.genre);
  });

  it('a corrected file of the same name is a different file: loaded beside the old one, archived under a distinct name', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
    const corrected = fixture('tiny/streams/a.csv').replace('u4,t4,2024-06-01 11:00:00', 'u4,t4,2024-06-01 11:00:01');
    writeFileSync(join(lake, 'streams', 'a.csv'), corrected);
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.loaded).to.equal(true);
    expect(r.json.files.map((f: any) => f.status)).to.deep.equal(['read']);
    expect(r.json.archived[0].renamed).to.equal(true);
    expect(await ledger(url)).to.have.length(3);
  });

  it('a ledger holding twin rows for one file (written by an older version) is repaired by the next run', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
    // What the fingerprint-only version left behind: no content hashes, a second row for
    // streams/a.csv pointing at the same archived object, and 2024-06-01 counted twice.
    await sql(url, 'update reporting_schema.musickpi_ledger set content_hash = null');
    await sql(
      url,
      `insert into reporting_schema.musickpi_ledger (file_key, fingerprint, size, rows, run_id, loaded_at, archived_key, hourly_loaded, genre_loaded)
       select file_key, '999:1', size, rows, 'zz-later-run', now(), archived_key, true, true
         from reporting_schema.musickpi_ledger where file_key = 'streams/a.csv'`,
    );
    await sql(url, `insert into reporting_schema.musickpi_ledger_dates values ('streams/a.csv', '999:1', '2024-06-01')`);
    await sql(url, `update reporting_schema.hourly_kpis set listen_counts = listen_counts * 2 where listen_date = '2024-06-01'`);
    await sql(url, `update reporting_schema.genre_level_kpis set listen_count = listen_count * 2 where listen_date = '2024-06-01'`);

    const dry = await runCli(['run', '--lake', lake, '--warehouse', url, '--dry-run', '--json']);
    expect(dry.code, dry.stderr).to.equal(0);
    expect(dry.json.ledgerRepaired).to.deep.equal(['streams/a.csv']);
    expect(await ledger(url)).to.have.length(3);

    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.ledgerRepaired).to.deep.equal(['streams/a.csv']);
    expect(r.json.loaded).to.equal(true);
    expect(r.json.datesRecomputed.hourly).to.deep.equal(['2024-06-01']);
    expect(r.json.warnings.join('\n')).to.match(/counted this file 2 times/);
    expectTable(await tableRows(url, 'hourly_kpis'), fixture('tiny/expected/hourly_kpis.csv'));
    expectTable(await tableRows(url, 'genre_level_kpis'), fixture('tiny/expected/genre_level_kpis.csv'));
    const rows = await ledger(url);
    expect(rows.map((e) => e.file_key)).to.deep.equal(['streams/a.csv', 'streams/b.csv']);
    expect(
      await queryRows(url, `select count(*)::int as n from reporting_schema.musickpi_ledger_dates where fingerprint = '999:1'`),
    ).to.deep.equal([{ n: 0 }]);

    const again = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(again.json.ledgerRepaired).to.deep.equal([]);
    expect(again.json.loaded).to.equal(false);
  });
});
