// `musickpi report` on the tiny lake against the test PostgreSQL: the terminal report, --json
// and --html, exactly.
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyLake, runCli } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { renderText } from '../../lib/cli/report/text.js';
import { tinyData } from '../unit/report/fixtures.js';

describe('e2e: musickpi report', function () {
  this.timeout(180_000);
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('prints the latest date, --json with full precision, --html a page; with no run history', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    const run = await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet']);
    expect(run.code, run.stderr).to.equal(0);

    const text = await runCli(['report', '--warehouse', url, '--quiet']);
    expect(text.code, text.stderr).to.equal(0);
    const runsTable = text.stdout.includes('no run history') ? null : undefined;
    if (runsTable === null) expect(text.stdout).to.equal(renderText(tinyData(['2024-06-02'])));
    else expect(text.stdout.split('Last runs')[0]).to.equal(renderText(tinyData(['2024-06-02'])).split('Last runs')[0]);

    const json = await runCli(['report', '--warehouse', url, '--quiet', '--json', '--date', '2024-06-01']);
    expect(json.code, json.stderr).to.equal(0);
    expect(json.stdout.trim().split('\n')).to.have.length(1);
    const got = JSON.parse(json.stdout);
    const want = tinyData(['2024-06-01']);
    expect(got.dates).to.deep.equal(['2024-06-01']);
    expect(got.latestDate).to.equal('2024-06-02');
    expect(got.hourly).to.deep.equal(want.hourly);
    expect(got.genres).to.deep.equal(want.genres);

    const dir = mkdtempSync(join(tmpdir(), 'musickpi-report-'));
    dirs.push(dir);
    const page = join(dir, 'out', 'report.html');
    const html = await runCli(['report', '--warehouse', url, '--quiet', '--start', '2024-06-01', '--end', '2024-06-03', '--html', page]);
    expect(html.code, html.stderr).to.equal(0);
    expect(html.stdout).to.contain(`report page: ${page}`);
    expect(existsSync(page)).to.equal(true);
    const body = readFileSync(page, 'utf8');
    expect(body).to.match(/^<!doctype html>/);
    expect(body).to.contain('Listens and unique listeners by hour');
    expect(body).not.to.match(/<script|<link|<img/i);
  });

  it('a warehouse without KPI tables: a clear error, not a crash', async () => {
    const url = await freshDatabase();
    const r = await runCli(['report', '--warehouse', url, '--quiet', '--json']);
    expect(r.code).to.equal(78);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!).error.code).to.equal('MKPI_CONFIG');
  });
});
