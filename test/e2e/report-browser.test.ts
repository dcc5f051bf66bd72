// The report page in a real headless Chromium (Debian's package), driven over the DevTools
// protocol on a pipe (--remote-debugging-pipe: no port, no driver dependency). The network is
// cut three ways (offline emulation, a dead proxy, and every request recorded): the page must
// load with no request but its own file, no console error, and every chart with its title.
import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { CHART_TITLES, renderHtml } from '../../lib/cli/report/html.js';
import { RUNS, tinyData } from '../unit/report/fixtures.js';
import { REPO } from '../support/cli.js';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

function findChromium(): string | undefined {
  return CANDIDATES.find((p) => existsSync(p));
}

/** Installs Debian's chromium when it is missing and we may (root); returns why not otherwise. */
function ensureChromium(): { path?: string; why?: string } {
  const found = findChromium();
  if (found) return { path: found };
  if (process.getuid?.() !== 0)
    return { why: 'Chromium is not installed (/usr/bin/chromium) and this process is not root: apt-get install -y chromium' };
  const r = spawnSync('sh', ['-c', 'apt-get install -y chromium || (apt-get update && apt-get install -y chromium)'], {
    stdio: 'ignore',
    timeout: 600_000,
  });
  const path = findChromium();
  return path ? { path } : { why: `apt-get install -y chromium failed (exit ${r.status})` };
}

interface Cdp {
  send(method: string, params?: Record<string, unknown>, sessionId?: string): Promise<any>;
  on(handler: (msg: { method: string; params: any; sessionId?: string }) => void): void;
}

function cdpOverPipe(child: ChildProcess): Cdp {
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  let id = 0;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  const handlers: ((msg: any) => void)[] = [];
  let buf = '';
  fromBrowser.setEncoding('utf8');
  fromBrowser.on('data', (chunk: string) => {
    buf += chunk;
    let at: number;
    while ((at = buf.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buf.slice(0, at));
      buf = buf.slice(at + 1);
      if (msg.id !== undefined && pending.has(msg.id)) {
        const p = pending.get(msg.id)!;
        pending.delete(msg.id);
        if (msg.error) p.reject(new Error(`${msg.error.message}`));
        else p.resolve(msg.result);
      } else for (const h of handlers) h(msg);
    }
  });
  return {
    send(method, params = {}, sessionId) {
      const msg = { id: ++id, method, params, ...(sessionId ? { sessionId } : {}) };
      return new Promise((resolve, reject) => {
        pending.set(msg.id, { resolve, reject });
        toBrowser.write(JSON.stringify(msg) + '\0');
      });
    },
    on(handler) {
      handlers.push(handler);
    },
  };
}

describe('e2e: the report page in headless Chromium', function () {
  this.timeout(600_000);
  let chromium: string | undefined;
  const dirs: string[] = [];

  before(function () {
    const { path, why } = ensureChromium();
    if (!path) {
      if (process.env.CI === 'true') throw new Error(`CI=true and no browser: ${why}`);
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    chromium = path;
  });
  after(() => {
    // Chromium's helper processes may still be writing its profile for a moment after it exits.
    for (const d of dirs) {
      try {
        rmSync(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 300 });
      } catch {
        // A temporary folder left behind is not the page's fault.
      }
    }
  });

  it('loads with no network request and no console error, every chart present with its title; screenshot kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'musickpi-report-'));
    dirs.push(dir);
    const file = join(dir, 'report.html');
    writeFileSync(file, renderHtml(tinyData(['2024-06-01', '2024-06-02'], RUNS), { generatedAt: new Date('2024-06-03T08:00:00Z') }));
    const url = pathToFileURL(file).href;

    const child = spawn(
      chromium!,
      [
        '--headless=new',
        '--remote-debugging-pipe',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--no-default-browser-check',
        '--disable-extensions',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--proxy-server=http://127.0.0.1:9',
        '--proxy-bypass-list=<-loopback>',
        `--user-data-dir=${join(dir, 'profile')}`,
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      const cdp = cdpOverPipe(child);
      const requests: string[] = [];
      const errors: string[] = [];
      let loaded: () => void = () => {};
      const load = new Promise<void>((r) => (loaded = r));
      cdp.on((m) => {
        if (m.method === 'Network.requestWillBeSent') requests.push(String(m.params.request.url));
        if (m.method === 'Runtime.consoleAPICalled' && (m.params.type === 'error' || m.params.type === 'assert'))
          errors.push(JSON.stringify(m.params.args));
        if (m.method === 'Runtime.exceptionThrown') errors.push(JSON.stringify(m.params.exceptionDetails));
        if (m.method === 'Log.entryAdded' && m.params.entry.level === 'error') errors.push(String(m.params.entry.text));
        if (m.method === 'Page.loadEventFired') loaded();
      });
      const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank' });
      const { sessionId } = await cdp.send('Target.attachToTarget', { targetId, flatten: true });
      const s = (method: string, params?: Record<string, unknown>) => cdp.send(method, params, sessionId);
      await s('Network.enable');
      await s('Network.emulateNetworkConditions', { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
      await s('Page.enable');
      await s('Runtime.enable');
      await s('Log.enable');
      await s('Emulation.setDeviceMetricsOverride', { width: 412, height: 900, deviceScaleFactor: 1, mobile: true });
      await s('Page.navigate', { url });
      await load;
      const { result } = await s('Runtime.evaluate', {
        returnByValue: true,
        expression: `JSON.stringify([...document.querySelectorAll('section.chart-block')].map((sec) => {
          const svg = sec.querySelector('svg'); const r = svg ? svg.getBoundingClientRect() : null;
          return { heading: sec.querySelector('h2').textContent, title: svg ? svg.querySelector('title').textContent : null,
                   width: r ? r.width : 0, height: r ? r.height : 0, table: !!sec.querySelector('table'),
                   overflow: document.documentElement.scrollWidth > window.innerWidth };
        }))`,
      });
      const charts = JSON.parse(result.value as string);
      expect(charts.map((c: any) => c.heading)).to.deep.equal(Object.values(CHART_TITLES));
      for (const c of charts) {
        expect(c.title, c.heading).to.equal(c.heading);
        expect(c.width, c.heading).to.be.above(300);
        expect(c.height, c.heading).to.be.above(100);
        expect(c.table, c.heading).to.equal(true);
        expect(c.overflow, 'no sideways scrolling of the page on a phone').to.equal(false);
      }
      const shot = await s('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
      const artifacts = join(REPO, 'test-artifacts');
      mkdirSync(artifacts, { recursive: true });
      writeFileSync(join(artifacts, 'report-page.png'), Buffer.from(shot.data as string, 'base64'));
      expect(requests.filter((u) => u !== url)).to.deep.equal([]);
      expect(errors).to.deep.equal([]);
      await cdp.send('Browser.close').catch(() => undefined);
    } catch (err) {
      if (stderr) console.log(stderr.slice(-2000));
      throw err;
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      if (child.exitCode === null) child.kill();
      await exited;
    }
  });
});
