// The CLI under a pseudo-terminal of 0×0 (what `script`, `docker exec -t` and some CI runners
// give): stderr is a TTY, but of unknown width, so there must be no spinner — ora's redraw never
// finishes a frame there and the process spins forever, deaf to SIGINT.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { BIN, copyLake, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function underPty(args: string[], killAfterMs: number): Promise<{ code: number | null; bytes: number; out: string }> {
  const command = [process.execPath, BIN, ...args].map(quote).join(' ');
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.CI;
    // stdin not a terminal: script gives its child a pty of 0 rows × 0 columns.
    const child = spawn('script', ['-qec', command, '/dev/null'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let out = '';
    const keep = (d: Buffer) => {
      bytes += d.length;
      if (out.length < 20_000) out += d.toString();
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, bytes, out });
    });
  });
}

describe('e2e: the CLI on a 0×0 pseudo-terminal', function () {
  this.timeout(120_000);

  it('runs to the end with a few lines of progress, no spinner', async function () {
    const probe = await underPty(['--version'], 30_000).catch(() => undefined);
    if (!probe || probe.code !== 0) this.skip(); // no util-linux `script` on this machine
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    const r = await underPty(['run', '--lake', lake, '--warehouse', url], 90_000);
    expect(r.code, r.out).to.equal(0);
    expect(r.bytes, 'bytes written to the terminal').to.be.below(4096);
    expect(r.out).to.not.contain('\u001b[1A');
    expect(await tableRows(url, 'hourly_kpis')).to.have.length(3);
  });
});
