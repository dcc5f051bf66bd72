// createProgress and the failure/warning lines in each format and level, with a fake stream and clock.
import { expect } from 'chai';
import {
  createProgress,
  writeErrorLine,
  writeWarningLine,
  PROGRESS_INTERVAL_MS,
  type ProgressOptions,
  type LogStream,
} from '../../../lib/cli/progress.js';

const T0 = Date.parse('2024-06-01T02:00:00.000Z');

function fake(opts: Partial<ProgressOptions> = {}, tty: { isTTY?: boolean; columns?: number } = {}) {
  let t = T0;
  const chunks: string[] = [];
  const stream: LogStream = { write: (c: string) => chunks.push(c), ...tty };
  const progress = createProgress({ quiet: false, interactive: false, stream, now: () => t, ...opts });
  return {
    progress,
    stream,
    advance: (ms: number) => (t += ms),
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter(Boolean),
    records: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

/** A run's worth of events: a stage, reading three files over 12 s in 1-s updates, a warning. */
function feed(f: ReturnType<typeof fake>) {
  f.progress.event({ type: 'stage', stage: 'streams', message: 'reading 3 stream file(s)' });
  for (let i = 1; i <= 12; i++) {
    f.advance(1000);
    f.progress.event({ type: 'progress', rows: i * 100, files: Math.floor((i - 1) / 4), totalFiles: 3 });
  }
  f.progress.event({ type: 'warn', message: 'streams/b.csv: repeated header name(s) user_id' });
  f.progress.event({ type: 'info', message: 'removed 1 old rejects folder(s) under rejects/' });
}

const ESC = '\u001b[';

describe('progress: text format', () => {
  it('writes timestamped lines (not a terminal), warnings prefixed, no colour by default', () => {
    const f = fake();
    f.progress.event({ type: 'stage', stage: 'list', message: 'listing /lake/streams/' });
    f.progress.log('using the embedded PostgreSQL in /home/u/.local/share/musickpi');
    f.advance(1500);
    f.progress.warn('a password in --warehouse is visible');
    expect(f.lines()).to.deep.equal([
      '2024-06-01T02:00:00.000Z listing /lake/streams/',
      '2024-06-01T02:00:00.000Z using the embedded PostgreSQL in /home/u/.local/share/musickpi',
      '2024-06-01T02:00:01.500Z warning: a password in --warehouse is visible',
    ]);
    expect(f.text()).not.to.contain(ESC);
  });

  it('colours warnings yellow when asked, and never the plain lines', () => {
    const f = fake({ color: true });
    f.progress.log('plain');
    f.progress.warn('careful');
    const [plain, warn] = f.lines();
    expect(plain).not.to.contain(ESC);
    expect(warn).to.contain(`${ESC}33m`).and.to.contain('warning: careful');
  });

  it('at info, progress lines come at most every 5 s; stages, warnings and infos always', () => {
    const f = fake();
    feed(f);
    const progress = f.lines().filter((l) => l.includes('reading streams:'));
    // 12 s of updates: at 5 s and at 10 s.
    expect(progress).to.have.length(2);
    expect(progress[0]).to.match(/^2024-06-01T02:00:05\.000Z reading streams: 500 rows \(100 rows\/s\), file 2\/3$/);
    expect(f.lines().filter((l) => !l.includes('reading streams:'))).to.have.length(3);
    expect(PROGRESS_INTERVAL_MS).to.equal(5000);
  });

  it('at verbose, a line per file event besides; at debug, every update and the debug lines', () => {
    const info = fake();
    const verbose = fake({ level: 'verbose' });
    const debug = fake({ level: 'debug' });
    for (const f of [info, verbose, debug]) {
      feed(f);
      f.progress.debug('COPY into a temp table', { table: 'hourly_kpis' });
    }
    const count = (f: ReturnType<typeof fake>) => f.lines().filter((l) => l.includes('reading streams:')).length;
    expect(count(info)).to.equal(2);
    // Files done go 0, 1, 2 (three file events, at 1, 5 and 9 s) and the interval lines (5 and 10 s).
    expect(count(verbose)).to.equal(4);
    expect(count(debug)).to.equal(12);
    expect(info.text()).not.to.contain('COPY into a temp table');
    expect(verbose.text()).not.to.contain('COPY into a temp table');
    expect(debug.text()).to.contain('COPY into a temp table');
  });

  it('--quiet writes nothing', () => {
    const f = fake({ quiet: true, level: 'debug' });
    feed(f);
    f.progress.log('x');
    f.progress.warn('y');
    f.progress.debug('z');
    f.progress.stop();
    expect(f.text()).to.equal('');
  });

  it('redacts passwords in URLs', () => {
    const f = fake();
    f.progress.warn('cannot reach postgresql://etl:s3cret@db:5432/dw');
    expect(f.text()).not.to.contain('s3cret');
    expect(f.text()).to.contain('postgresql://etl:***@db:5432/dw');
  });
});

describe('progress: json format', () => {
  const base = { format: 'json', runId: '20240601T020000Z-abc123', command: 'run' } as const;

  it('writes one object per line with time, level, run_id, command, event, message and the fields', () => {
    const f = fake(base);
    feed(f);
    f.progress.log('using the embedded PostgreSQL');
    const recs = f.records();
    expect(f.lines()).to.have.length(recs.length);
    for (const r of recs) {
      expect(Object.keys(r).slice(0, 6)).to.deep.equal(['time', 'level', 'run_id', 'command', 'event', 'message']);
      expect(r.run_id).to.equal(base.runId);
      expect(r.command).to.equal('run');
      expect(new Date(r.time).toISOString()).to.equal(r.time);
      expect(r.level).to.be.oneOf(['debug', 'info', 'warn', 'error']);
    }
    expect(recs[0]).to.deep.equal({
      time: '2024-06-01T02:00:00.000Z',
      level: 'info',
      run_id: base.runId,
      command: 'run',
      event: 'stage',
      message: 'reading 3 stream file(s)',
      stage: 'streams',
    });
    const progress = recs.filter((r) => r.event === 'progress');
    expect(progress).to.have.length(2);
    expect(progress[0]).to.include({ level: 'info', rows: 500, files: 1, totalFiles: 3, time: '2024-06-01T02:00:05.000Z' });
    expect(recs.find((r) => r.event === 'warn')).to.include({ level: 'warn', message: 'streams/b.csv: repeated header name(s) user_id' });
    expect(recs.filter((r) => r.event === 'info').map((r) => r.message)).to.deep.equal([
      'removed 1 old rejects folder(s) under rejects/',
      'using the embedded PostgreSQL',
    ]);
  });

  it('never draws a spinner nor colours, even on an interactive terminal', () => {
    const f = fake({ ...base, interactive: true, color: true }, { isTTY: true, columns: 80 });
    feed(f);
    f.progress.stop();
    expect(f.text()).not.to.contain(ESC);
    expect(() => f.records()).not.to.throw();
  });

  it('verbose and debug extras are level debug; debug lines carry their fields', () => {
    const f = fake({ ...base, level: 'debug' });
    feed(f);
    f.progress.debug('COPY into a temp table', { table: 'hourly_kpis', ms: 12 });
    const recs = f.records();
    const progress = recs.filter((r) => r.event === 'progress');
    expect(progress).to.have.length(12);
    expect(progress.filter((r) => r.level === 'info')).to.have.length(2);
    expect(recs.at(-1)).to.include({ level: 'debug', event: 'debug', message: 'COPY into a temp table', table: 'hourly_kpis', ms: 12 });
  });

  it('a field cannot overwrite the envelope, and strings in fields are redacted', () => {
    const f = fake({ ...base, level: 'debug' });
    f.progress.debug('connect', { level: 'info', run_id: 'x', url: 'postgresql://u:pw@h/db' });
    const [r] = f.records();
    expect(r).to.include({ level: 'debug', run_id: base.runId, url: 'postgresql://u:***@h/db' });
  });
});

describe('progress: failure and warning lines', () => {
  const sink = () => {
    const chunks: string[] = [];
    return { stream: { write: (c: string) => chunks.push(c) }, text: () => chunks.join('') };
  };
  const error = { code: 'MKPI_BAD_ROWS', message: '12 bad rows (limit 0)', hint: 'see the rejects CSV', stage: 'validate' };

  it('text: the command line and an indented hint, red only with colour', () => {
    const s = sink();
    writeErrorLine(error, { command: 'run', stream: s.stream });
    expect(s.text()).to.equal('musickpi run: MKPI_BAD_ROWS: 12 bad rows (limit 0)\n  hint: see the rejects CSV\n');
    const c = sink();
    writeErrorLine(error, { command: 'run', stream: c.stream, color: true });
    expect(c.text()).to.contain(`${ESC}31mmusickpi run: MKPI_BAD_ROWS`);
  });

  it('json: one error line with code, hint and stage (and the stack of an internal error)', () => {
    const s = sink();
    writeErrorLine(error, { format: 'json', command: 'run', runId: 'r1', stream: s.stream, now: () => T0 });
    const lines = s.text().split('\n').filter(Boolean);
    expect(lines).to.have.length(1);
    expect(JSON.parse(lines[0])).to.deep.equal({
      time: '2024-06-01T02:00:00.000Z',
      level: 'error',
      run_id: 'r1',
      command: 'run',
      event: 'error',
      message: '12 bad rows (limit 0)',
      code: 'MKPI_BAD_ROWS',
      hint: 'see the rejects CSV',
      stage: 'validate',
    });
    const internal = sink();
    const cause = new Error('boom at postgresql://u:pw@h/db');
    writeErrorLine({ code: 'MKPI_INTERNAL', message: 'boom', hint: null, stage: null }, { format: 'json', stream: internal.stream }, cause);
    const [only, ...rest] = internal.text().split('\n').filter(Boolean);
    expect(rest).to.deep.equal([]);
    const rec = JSON.parse(only);
    expect(rec).to.include({ level: 'error', code: 'MKPI_INTERNAL', run_id: null, command: null });
    expect(rec.stack).to.contain('boom at postgresql://u:***@h/db');
  });

  it('warnings outside a run: musickpi: warning: … or a json warn line', () => {
    const t = sink();
    writeWarningLine('cannot write --report-file /x', { stream: t.stream });
    expect(t.text()).to.equal('musickpi: warning: cannot write --report-file /x\n');
    const j = sink();
    writeWarningLine('lineage: HTTP 503', { format: 'json', runId: 'r1', command: 'run', stream: j.stream });
    expect(JSON.parse(j.text())).to.include({ level: 'warn', event: 'warn', message: 'lineage: HTTP 503', run_id: 'r1' });
  });
});
