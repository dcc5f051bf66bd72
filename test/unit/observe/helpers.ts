// Shared by the observer tests (unit and e2e): the OpenLineage event schema check, a local HTTP
// server that records what it is sent, and a Prometheus text parser of the tests' own.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { expect } from 'chai';
import { REPO } from '../../support/cli.js';

// ajv-formats is CommonJS: under ESM its function is the default export, under tsx's CJS interop one level deeper.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv2020) => Ajv2020;

const ajv = addFormats(new Ajv2020({ allErrors: true, strict: true }));
ajv.addSchema(JSON.parse(readFileSync(join(REPO, 'lib', 'cli', 'observe', 'facets.schema.json'), 'utf8')) as object);
const validate = ajv.compile(JSON.parse(readFileSync(join(import.meta.dirname, 'openlineage-event.schema.json'), 'utf8')) as object);

/** Fails the test unless `event` has every field the OpenLineage spec requires, with the spec's types. */
export function expectValidEvent(event: unknown): void {
  const ok = validate(event);
  expect(ok, `${ajv.errorsText(validate.errors, { separator: '\n' })}\n${JSON.stringify(event, null, 2)}`).to.equal(true);
}

/** Facets at every level of an event (run, job, datasets): each must carry _producer and _schemaURL. */
export function allFacets(event: any): Record<string, any>[] {
  const out: Record<string, any>[] = [];
  const add = (facets: Record<string, any> | undefined) => {
    for (const f of Object.values(facets ?? {})) out.push(f);
  };
  add(event.run?.facets);
  add(event.job?.facets);
  for (const d of [...(event.inputs ?? []), ...(event.outputs ?? [])]) {
    add(d.facets);
    add(d.inputFacets);
    add(d.outputFacets);
  }
  return out;
}

export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Capture {
  url: string;
  requests: Recorded[];
  /** Bodies of the requests, parsed as JSON. */
  events(): any[];
  /** How the server answers from now on: a status, or 'hang' (never answers). */
  respond(answer: number | 'hang'): void;
  close(): Promise<void>;
}

/** A local HTTP server that records every request and answers 200 (or as told). */
export async function captureServer(): Promise<Capture> {
  const requests: Recorded[] = [];
  let answer: number | 'hang' = 200;
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      if (answer === 'hang') {
        hanging.add(res);
        return;
      }
      res.writeHead(answer, { 'content-type': 'text/plain' });
      res.end(answer >= 400 ? 'server says no' : '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    events: () => requests.map((r) => JSON.parse(r.body)),
    respond: (a) => (answer = a),
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (taken, then freed). */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface PromFamily {
  help: string | undefined;
  type: string | undefined;
  samples: { labels: Record<string, string>; value: number }[];
}

/**
 * Parses the Prometheus text format (0.0.4) strictly enough to catch a malformed file: every
 * line is a HELP or TYPE comment, or a sample `name{label="value",...} value`; a family's
 * HELP and TYPE come before its samples, once.
 */
export function parseProm(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { help: undefined, type: undefined, samples: [] }));
    return f;
  };
  expect(text.endsWith('\n'), 'ends with a newline').to.equal(true);
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      const f = family(meta[2]);
      expect(f.samples, `${meta[1]} of ${meta[2]} before its samples`).to.have.length(0);
      if (meta[1] === 'HELP') {
        expect(f.help, `one HELP for ${meta[2]}`).to.equal(undefined);
        f.help = meta[3];
      } else {
        expect(f.type, `one TYPE for ${meta[2]}`).to.equal(undefined);
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).to.include(meta[3]);
        f.type = meta[3];
      }
      continue;
    }
    const m =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (-?(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|NaN|\+Inf|-Inf))$/.exec(
        line,
      );
    expect(m, `not a sample line: ${JSON.stringify(line)}`).to.not.equal(null);
    const labels: Record<string, string> = {};
    for (const lm of (m![2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      expect(labels, `label ${lm[1]} twice`).not.to.have.property(lm[1]);
      labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
    }
    const f = family(m![1]);
    expect(f.type, `TYPE of ${m![1]} before its samples`).to.be.a('string');
    f.samples.push({ labels, value: m![3] === '+Inf' ? Infinity : m![3] === '-Inf' ? -Infinity : Number(m![3]) });
  }
  return families;
}

/** The value of the one sample of `name` with these labels (among others). */
export function promValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string>): number | undefined {
  const matches = (families.get(name)?.samples ?? []).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  expect(matches.length, `${name}${JSON.stringify(labels)}: samples`).to.be.at.most(1);
  return matches[0]?.value;
}
