// Date windows (--date, --start/--end) and expected dates (--expect-dates, --strict-dates): the
// late-file rule on demand, and a guard against a delivery of the wrong days.
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyLake, queryRows, runCli, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

const LATER = 'user_id,track_id,listen_time\nu1,t2,2024-06-02 09:00:00\nu2,t3,2024-06-02 10:00:00\nu3,t1,2024-06-03 11:00:00\n';

async function loaded(): Promise<{ url: string; lake: string }> {
  const url = await freshDatabase();
  const lake = copyLake('tiny');
  writeFileSync(join(lake, 'streams', 'c.csv'), LATER);
  const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet']);
  expect(r.code, r.stderr).to.equal(0);
  return { url, lake };
}

describe('e2e: date windows and expected dates', function () {
  this.timeout(120_000);

  it('compute --date D restores exactly the clean values of D after tampering, and leaves other dates alone', async () => {
    const { url, lake } = await loaded();
    const clean = { hourly: await tableRows(url, 'hourly_kpis'), genre: await tableRows(url, 'genre_level_kpis') };
    await queryRows(url, "update reporting_schema.hourly_kpis set listen_counts = 999 where listen_date in ('2024-06-01', '2024-06-02')");
    await queryRows(url, "delete from reporting_schema.genre_level_kpis where listen_date in ('2024-06-01', '2024-06-02')");
    const r = await runCli(['compute', '--lake', lake, '--warehouse', url, '--date', '2024-06-01', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.datesRecomputed).to.deep.equal({ hourly: ['2024-06-01'], genre: ['2024-06-01'] });
    expect(r.json.reread.length).to.be.greaterThan(0);
    const hourly = (await tableRows(url, 'hourly_kpis')) as { listen_date: unknown; listen_counts: unknown }[];
    const day = <R extends { listen_date: unknown }>(rows: R[], d: string) => rows.filter((x) => String(x.listen_date).startsWith(d));
    expect(day(hourly, '2024-06-01')).to.deep.equal(day(clean.hourly as { listen_date: unknown }[], '2024-06-01'));
    // 2024-06-02 stays as it was left: tampered.
    expect(day(hourly, '2024-06-02').every((x) => x.listen_counts === 999)).to.equal(true);
    const genre = (await tableRows(url, 'genre_level_kpis')) as { listen_date: unknown }[];
    expect(day(genre, '2024-06-01')).to.deep.equal(day(clean.genre as { listen_date: unknown }[], '2024-06-01'));
    expect(day(genre, '2024-06-02')).to.deep.equal([]);
    // An Airflow data interval, as instants: [2024-06-02T00:00, 2024-06-03T00:00) is 2024-06-02.
    const w = await runCli([
      'compute',
      '--lake',
      lake,
      '--warehouse',
      url,
      '--start',
      '2024-06-02T00:00:00+00:00',
      '--end',
      '2024-06-03T00:00:00+00:00',
      '--json',
    ]);
    expect(w.code, w.stderr).to.equal(0);
    expect(w.json.datesRecomputed.hourly).to.deep.equal(['2024-06-02']);
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(clean.hourly);
    expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(clean.genre);
  });

  it('an empty or reversed window, or a half one, is a usage error (64)', async () => {
    const lake = copyLake('tiny');
    for (const args of [
      ['--start', '2024-06-02', '--end', '2024-06-02'],
      ['--start', '2024-06-03', '--end', '2024-06-01'],
      ['--start', '2024-06-01'],
      ['--date', '2024-02-30'],
      ['--date', '2024-06-01', '--end', '2024-06-02'],
    ]) {
      const r = await runCli(['compute', '--lake', lake, '--warehouse', 'postgresql://x@127.0.0.1:1/x', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(64);
    }
  });

  it('--expect-dates warns about new files carrying other dates; --strict-dates fails with 65 before loading', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    writeFileSync(join(lake, 'streams', 'c.csv'), LATER);
    const v = await runCli(['validate', '--lake', lake, '--expect-dates', '2024-06-01', '--json']);
    expect(v.code, v.stderr).to.equal(0);
    expect(v.json.unexpectedDates).to.deep.equal([
      { file: 'streams/b.csv', dates: ['2024-06-02'] },
      { file: 'streams/c.csv', dates: ['2024-06-02', '2024-06-03'] },
    ]);
    expect(v.json.warnings.join('\n')).to.contain('--expect-dates 2024-06-01');
    const strict = await runCli([
      'run',
      '--lake',
      lake,
      '--warehouse',
      url,
      '--expect-dates',
      '2024-06-01..2024-06-03',
      '--strict-dates',
      '--json',
    ]);
    expect(strict.code, strict.stderr).to.equal(65);
    expect(strict.json.error.code).to.equal('MKPI_UNEXPECTED_DATES');
    expect(strict.json.loaded).to.equal(false);
    expect(strict.json.unexpectedDates).to.deep.equal([{ file: 'streams/c.csv', dates: ['2024-06-03'] }]);
    const ok = await runCli([
      'run',
      '--lake',
      lake,
      '--warehouse',
      url,
      '--expect-dates',
      '2024-06-01..2024-06-04',
      '--strict-dates',
      '--json',
    ]);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.json.loaded).to.equal(true);
  });
});
