// The CLI under a pseudo-terminal of 0×0 (what `script`, `docker exec -t` and some CI runners
// give): stderr is a TTY, but of unknown width, so there must be no spinner — ora's redraw never
// finishes a frame there and the process spins forever, deaf to SIGINT.
import { expect } from 'chai';
import { copyLake, runCli, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

async function underPty(args: string[], timeoutMs: number): Promise<{ code: number | null; bytes: number; out: string }> {
  // CI unset: the CLI must find out from the terminal itself that it cannot draw a spinner.
  const r = await runCli(args, { pty: true, env: { CI: undefined }, timeoutMs });
  const out = r.stdout + r.stderr;
  return { code: r.code, bytes: Buffer.byteLength(out), out: out.slice(0, 20_000) };
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
