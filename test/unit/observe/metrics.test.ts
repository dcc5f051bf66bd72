// Prometheus metrics: the textfile (parsed back by the tests' own parser: names, labels, values,
// HELP and TYPE), the last success kept across a failure, other commands' series kept, the atomic
// replace; the Pushgateway push; failures as warnings.
import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runObservers } from '../../../lib/cli/observe/index.js';
import { FAMILIES, formatExposition, parseExposition, pushMetrics, writeMetricsFile } from '../../../lib/cli/observe/metrics.js';
import { REJECT_REASONS } from '../../../lib/domain/reject-reasons.js';
import { BAD_ROWS, config, end, failed, FINISHED, report, start, STARTED } from './fixtures.js';
import { captureServer, parseProm, promValue } from './helpers.js';

const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mkpi-metrics-'));
  temps.push(d);
  return d;
}

const at = (iso: string) => new Date(iso);

describe('observe: metrics file (node exporter textfile collector)', () => {
  it('writes every family with HELP and TYPE, labelled by command, reason and table', async () => {
    const file = join(tmp(), 'musickpi.prom');
    const c = config('run', {}, { lake: '/l', 'metrics-file': file });
    const observers = runObservers(c, () => undefined);
    expect(observers.map((o) => o.name)).to.deep.equal(['metrics']);
    const s = start(c);
    await observers[0].start(s);
    await observers[0].finish(end(s, 0, report()));
    const text = readFileSync(file, 'utf8');
    const m = parseProm(text);
    expect([...m.keys()]).to.deep.equal(FAMILIES.map(([n]) => n));
    for (const [name, f] of m) {
      expect(f.type, name).to.equal('gauge');
      expect(f.help, name).to.be.a('string').and.not.equal('');
      for (const sample of f.samples) expect(sample.labels.command, name).to.equal('run');
    }
    const run = { command: 'run' };
    expect(promValue(m, 'musickpi_last_run_status', run)).to.equal(1);
    expect(promValue(m, 'musickpi_last_run_exit_code', run)).to.equal(0);
    expect(promValue(m, 'musickpi_last_run_timestamp_seconds', run)).to.equal(FINISHED.getTime() / 1000);
    expect(promValue(m, 'musickpi_last_success_timestamp_seconds', run)).to.equal(FINISHED.getTime() / 1000);
    expect(promValue(m, 'musickpi_run_duration_seconds', run)).to.equal(12.5);
    expect(promValue(m, 'musickpi_files_read', run)).to.equal(2);
    expect(promValue(m, 'musickpi_rows_read', run)).to.equal(12);
    expect(promValue(m, 'musickpi_complete_rows', run)).to.equal(9);
    expect(m.get('musickpi_rejected_rows')!.samples.map((x) => x.labels.reason)).to.deep.equal([...REJECT_REASONS]);
    expect(promValue(m, 'musickpi_rejected_rows', { ...run, reason: 'malformed' })).to.equal(2);
    expect(promValue(m, 'musickpi_rejected_rows', { ...run, reason: 'unknown_track' })).to.equal(1);
    expect(promValue(m, 'musickpi_rejected_rows', { ...run, reason: 'unknown_user' })).to.equal(0);
    expect(promValue(m, 'musickpi_rows_written', { ...run, table: 'hourly_kpis' })).to.equal(5);
    expect(promValue(m, 'musickpi_rows_written', { ...run, table: 'genre_level_kpis' })).to.equal(3);
  });

  it('a failed run: status 0, its exit code, and the last success of the earlier run kept', async () => {
    const dir = tmp();
    const file = join(dir, 'musickpi.prom');
    const c = config('run', {}, { lake: '/l', 'metrics-file': file });
    const ok = start(c, at('2024-06-01T03:00:00Z'));
    await writeMetricsFile(file, { ...end(ok, 0, report()), finishedAt: at('2024-06-01T03:00:10Z') });
    const bad = start(c, at('2024-06-02T03:00:00Z'));
    await writeMetricsFile(file, { ...end(bad, 65, failed(report(), BAD_ROWS), BAD_ROWS), finishedAt: at('2024-06-02T03:00:04Z') });
    const m = parseProm(readFileSync(file, 'utf8'));
    const run = { command: 'run' };
    expect(promValue(m, 'musickpi_last_run_status', run)).to.equal(0);
    expect(promValue(m, 'musickpi_last_run_exit_code', run)).to.equal(65);
    expect(promValue(m, 'musickpi_last_run_timestamp_seconds', run)).to.equal(Date.parse('2024-06-02T03:00:04Z') / 1000);
    expect(promValue(m, 'musickpi_last_success_timestamp_seconds', run)).to.equal(Date.parse('2024-06-01T03:00:10Z') / 1000);
    expect(promValue(m, 'musickpi_run_duration_seconds', run)).to.equal(4);
    expect(promValue(m, 'musickpi_rows_written', { ...run, table: 'hourly_kpis' })).to.equal(0);
    // Never a temporary file left beside it (the collector reads every *.prom of the folder).
    expect(readdirSync(dir)).to.deep.equal(['musickpi.prom']);
  });

  it('a failure with no earlier success has no last success sample; a later success sets it', async () => {
    const file = join(tmp(), 'm.prom');
    const c = config('run', {}, { lake: '/l', 'metrics-file': file });
    await writeMetricsFile(file, end(start(c), 69, { command: 'run', ok: false, error: BAD_ROWS }, BAD_ROWS));
    let m = parseProm(readFileSync(file, 'utf8'));
    expect(m.has('musickpi_last_success_timestamp_seconds')).to.equal(false);
    // No RunReport (a failure before the run): no row counts either.
    expect(m.has('musickpi_rows_read')).to.equal(false);
    expect(promValue(m, 'musickpi_last_run_exit_code', { command: 'run' })).to.equal(69);
    await writeMetricsFile(file, end(start(c), 0, report()));
    m = parseProm(readFileSync(file, 'utf8'));
    expect(promValue(m, 'musickpi_last_success_timestamp_seconds', { command: 'run' })).to.equal(FINISHED.getTime() / 1000);
  });

  it('one file for several commands: each run replaces its own series and keeps the others', async () => {
    const file = join(tmp(), 'm.prom');
    await writeMetricsFile(file, end(start(config('run', {})), 0, report()));
    const archive = config('archive', {});
    await writeMetricsFile(
      file,
      end(start(archive), 74, report('archive'), { code: 'MKPI_ARCHIVE_FAILED', message: 'x', hint: null, stage: 'archive' }),
    );
    const m = parseProm(readFileSync(file, 'utf8'));
    expect(promValue(m, 'musickpi_last_run_status', { command: 'run' })).to.equal(1);
    expect(promValue(m, 'musickpi_last_run_status', { command: 'archive' })).to.equal(0);
    expect(promValue(m, 'musickpi_last_run_exit_code', { command: 'archive' })).to.equal(74);
    expect(promValue(m, 'musickpi_last_success_timestamp_seconds', { command: 'run' })).to.equal(FINISHED.getTime() / 1000);
    expect(promValue(m, 'musickpi_last_success_timestamp_seconds', { command: 'archive' })).to.equal(undefined);
    // A second run of `run` leaves one series per label set.
    await writeMetricsFile(file, end(start(config('run', {})), 0, report()));
    const again = parseProm(readFileSync(file, 'utf8'));
    expect(again.get('musickpi_last_run_status')!.samples).to.have.length(2);
  });

  it('a previous file that is not ours, or not Prometheus text, is replaced without failing', async () => {
    const file = join(tmp(), 'm.prom');
    writeFileSync(file, 'garbage {{{\nother_metric{command="run"} 5\n\u0000\n');
    await writeMetricsFile(file, end(start(config('run', {})), 0, report()));
    const m = parseProm(readFileSync(file, 'utf8'));
    expect(m.has('other_metric')).to.equal(false);
    expect(promValue(m, 'musickpi_last_run_status', { command: 'run' })).to.equal(1);
  });

  it('label values are escaped, and read back', () => {
    const text = formatExposition([{ name: 'musickpi_rows_written', labels: { command: 'run', table: 'a"b\\c\nd' }, value: 1.5 }]);
    const m = parseProm(text);
    expect(m.get('musickpi_rows_written')!.samples[0]).to.deep.equal({ labels: { command: 'run', table: 'a"b\\c\nd' }, value: 1.5 });
    expect(parseExposition(text)).to.deep.equal([
      { name: 'musickpi_rows_written', labels: { command: 'run', table: 'a"b\\c\nd' }, value: 1.5 },
    ]);
  });

  it('a metrics file that cannot be written is one warning', async () => {
    const c = config('run', {}, { lake: '/l', 'metrics-file': join(tmp(), 'missing', 'm.prom') });
    const said: string[] = [];
    const [o] = runObservers(c, (m) => void said.push(m));
    await o.finish(end(start(c), 0, report()));
    expect(said).to.have.length(1);
    expect(said[0]).to.contain('--metrics-file');
  });
});

describe('observe: Pushgateway', () => {
  it('a success replaces the group job=musickpi/command=<command> (PUT), samples without the grouping label', async () => {
    const cap = await captureServer();
    try {
      const c = config('run', {}, { lake: '/l', pushgateway: cap.url + '/' });
      const [o] = runObservers(c, () => undefined);
      await o.finish(end(start(c), 0, report()));
      expect(cap.requests.map((r) => [r.method, r.url])).to.deep.equal([['PUT', '/metrics/job/musickpi/command/run']]);
      expect(cap.requests[0].headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
      const m = parseProm(cap.requests[0].body);
      for (const f of m.values()) for (const s of f.samples) expect(s.labels).not.to.have.property('command');
      expect(promValue(m, 'musickpi_last_run_status', {})).to.equal(1);
      expect(promValue(m, 'musickpi_last_success_timestamp_seconds', {})).to.equal(FINISHED.getTime() / 1000);
      expect(promValue(m, 'musickpi_rejected_rows', { reason: 'malformed' })).to.equal(2);
      expect(promValue(m, 'musickpi_rows_written', { table: 'hourly_kpis' })).to.equal(5);
    } finally {
      await cap.close();
    }
  });

  it('a failure adds to the group (POST) without a last success, so the gateway keeps the last one', async () => {
    const cap = await captureServer();
    try {
      const c = config('compute', {});
      await pushMetrics(cap.url, end(start(c), 65, failed(report('compute'), BAD_ROWS), BAD_ROWS));
      expect(cap.requests.map((r) => [r.method, r.url])).to.deep.equal([['POST', '/metrics/job/musickpi/command/compute']]);
      const m = parseProm(cap.requests[0].body);
      expect(m.has('musickpi_last_success_timestamp_seconds')).to.equal(false);
      expect(promValue(m, 'musickpi_last_run_status', {})).to.equal(0);
      expect(promValue(m, 'musickpi_last_run_exit_code', {})).to.equal(65);
    } finally {
      await cap.close();
    }
  });

  it('a gateway that fails or never answers: a retry, then one warning; the file is still written', async () => {
    const cap = await captureServer();
    try {
      cap.respond(503);
      const file = join(tmp(), 'm.prom');
      const c = config('run', {}, { lake: '/l', pushgateway: cap.url, 'metrics-file': file });
      const said: string[] = [];
      const [o] = runObservers(c, (m) => void said.push(m));
      await o.finish(end(start(c), 0, report()));
      expect(cap.requests).to.have.length(2);
      expect(said).to.have.length(1);
      expect(said[0]).to.contain('Pushgateway').and.to.contain('HTTP 503');
      expect(parseProm(readFileSync(file, 'utf8')).size).to.be.above(0);

      cap.respond('hang');
      const t0 = Date.now();
      await pushMetrics(cap.url, end(start(c), 0, report()), 100).then(
        () => expect.fail('resolved'),
        (err: Error) => expect(err.message).to.contain('no answer'),
      );
      expect(Date.now() - t0).to.be.below(2000);
    } finally {
      await cap.close();
    }
  });
});

describe('observe: metrics timings', () => {
  it('the duration is end minus start, never negative', async () => {
    const file = join(tmp(), 'm.prom');
    const c = config('run', {});
    await writeMetricsFile(file, { ...end(start(c), 0, report()), startedAt: STARTED, finishedAt: new Date(STARTED.getTime() - 5) });
    expect(promValue(parseProm(readFileSync(file, 'utf8')), 'musickpi_run_duration_seconds', {})).to.equal(0);
  });
});
