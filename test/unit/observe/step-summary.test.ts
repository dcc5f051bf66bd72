// The GitHub Actions step summary: what a run did, in Markdown, appended (each step of a job
// adds its own); names and messages from the data cannot inject Markdown or HTML.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runObservers } from '../../../lib/cli/observe/index.js';
import { md, stepSummary } from '../../../lib/cli/observe/step-summary.js';
import { zeroReasons } from '../../../lib/pipeline/report.js';
import { BAD_ROWS, config, end, failed, report, start } from './fixtures.js';

const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mkpi-summary-'));
  temps.push(d);
  return d;
}

describe('observe: GITHUB_STEP_SUMMARY', () => {
  it('a success: status, files, rows, rejects by reason, rows written, dates, warnings; appended', async () => {
    const file = join(tmp(), 'summary.md');
    writeFileSync(file, '## An earlier step\n');
    const c = config('run', { GITHUB_STEP_SUMMARY: file });
    const [o] = runObservers(c, () => undefined);
    expect(o.name).to.equal('step-summary');
    await o.finish(end(start(c), 0, report()));
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('## An earlier step\n')).to.equal(true);
    expect(text).to.contain('### ✅ musickpi run succeeded');
    expect(text).to.contain('| Stream files | 2 read, 1 already loaded, 1 re-read for late dates |');
    expect(text).to.contain('| Rows | 12 read, 9 complete, 3 rejected |');
    expect(text).to.contain('| Rows written | hourly\\_kpis 5, genre\\_level\\_kpis 3 |');
    expect(text).to.contain('| Dates recomputed | 2024-06-01, 2024-06-02 |');
    expect(text).to.contain('| malformed | 2 |');
    expect(text).to.contain('| unknown\\_track | 1 |');
    expect(text).not.to.contain('| unknown\\_user |');
    expect(text).to.contain('**Warnings** (1)');
    expect(text).to.contain('- 1 orphan stream row(s) rejected (unknown track or user)');
    expect(text).to.contain('| streams/b.csv | read | 6 | 3 | 3 | 2024-06-02 |');
    expect(text).to.contain('| Duration | 12.5 s |');
  });

  it('a failure: the code, the exit status, the message and the hint', () => {
    const c = config('run', {});
    const text = stepSummary(end(start(c), 65, failed(report(), BAD_ROWS), BAD_ROWS));
    expect(text).to.contain('### ❌ musickpi run failed: MKPI\\_BAD\\_ROWS (exit 65)');
    expect(text).to.contain('> 2 bad stream rows, more than --max-bad-rows 0');
    expect(text).to.contain('> hint: see the rejects file');
    expect(text).to.contain('| Rows written | hourly\\_kpis 0, genre\\_level\\_kpis 0 |');
  });

  it('a failure before any report, and a dry run', () => {
    const c = config('run', {});
    const early = stepSummary(
      end(
        start(c),
        69,
        { command: 'run', ok: false },
        { code: 'MKPI_WAREHOUSE_UNAVAILABLE', message: 'down', hint: null, stage: 'connect' },
      ),
    );
    expect(early).to.contain('failed: MKPI\\_WAREHOUSE\\_UNAVAILABLE (exit 69)');
    expect(early).not.to.contain('Rows');
    const dry = stepSummary(end(start(c), 0, report('run', { dryRun: true })));
    expect(dry).to.contain('succeeded (dry run: nothing written, nothing moved)');
    expect(dry).not.to.contain('Rows written');
  });

  it('file names and messages cannot inject Markdown, HTML or table cells; secrets in URLs are masked', () => {
    const r = report();
    r.files = [
      {
        name: 'streams/x|y<img src=x onerror=alert(1)>*.csv',
        bytes: 1,
        rows: 1,
        complete: 1,
        rejected: zeroReasons(),
        dates: [],
        status: 'read',
      },
    ];
    r.warnings = ['see postgresql://u:hunter2@h/d\n# heading'];
    const text = stepSummary(end(start(config('run', {})), 0, r));
    expect(text).to.contain('streams/x\\|y\\<img src=x onerror=alert(1)\\>\\*.csv');
    // Outside the summary's own <details> markup, every < is escaped.
    expect(text.replace(/<\/?details>|<\/?summary>/g, '')).not.to.match(/(^|[^\\])</m);
    expect(text).not.to.contain('hunter2');
    expect(text).not.to.match(/^# heading/m);
    expect(md('a_b')).to.equal('a\\_b');
  });

  it('a summary file that cannot be written is one warning', async () => {
    const c = config('validate', { GITHUB_STEP_SUMMARY: join(tmp(), 'no', 'such', 'file.md') });
    const said: string[] = [];
    const [o] = runObservers(c, (m) => void said.push(m));
    await o.finish(end(start(c), 0, report('validate')));
    expect(said).to.have.length(1);
    expect(said[0]).to.contain('GITHUB_STEP_SUMMARY');
  });
});
