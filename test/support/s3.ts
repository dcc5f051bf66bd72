// A local S3 (s3rver, in a child process of its own: see s3rver-process.ts) on a free port, and a
// fault-injecting HTTP proxy to put in front of it. s3rver is lenient where AWS is strict (no
// conditional writes, no SigV4 secret check): tests built on it prove streaming, pagination and
// encoding, not AWS's consistency guarantees.

import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

import { S3Lake, type S3LakeOptions } from '../../lib/adapters/lake/s3/s3-lake.js';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const S3RVER_PROCESS = path.join(import.meta.dirname, 's3rver-process.ts');

/** The credentials s3rver knows; they reach the SDK through its default chain (env), like in production. */
export const S3RVER_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
} as const;

const ENV_KEYS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', 'AWS_PROFILE'] as const;

export interface TestS3 {
  endpoint: string;
  /** Creates a bucket. */
  bucket(name: string): Promise<void>;
  /** A client for setting up and inspecting objects directly. */
  client: S3Client;
  putObject(bucket: string, key: string, body: string | Uint8Array): Promise<void>;
  /** An S3Lake on this server (close it when done). */
  lake(bucket: string, prefix?: string, opts?: Partial<S3LakeOptions>): S3Lake;
  /** Environment for child processes (the CLI) so that the default credential chain finds s3rver's keys. */
  env: Record<string, string>;
  /** Folder holding s3rver's files. */
  dir: string;
  stop(): Promise<void>;
}

export async function startS3(): Promise<TestS3> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'mkpi-s3rver-'));
  // Real credentials of the developer must never be sent (even to localhost), and a profile
  // pointing at SSO would make every test wait on the network: pin the chain to s3rver's keys.
  const savedEnv = new Map(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  Object.assign(process.env, S3RVER_ENV);

  let server: S3rverProcess;
  try {
    server = await startS3rverProcess(dir);
  } catch (err) {
    restoreEnv(savedEnv);
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${server.port}`;
  const client = new S3Client({
    endpoint,
    region: S3RVER_ENV.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: S3RVER_ENV.AWS_SECRET_ACCESS_KEY },
    // Without this a stream body is stored with its aws-chunked framing (see platform notes).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const lakes: S3Lake[] = [];

  return {
    endpoint,
    dir,
    client,
    env: { ...S3RVER_ENV },
    async bucket(name) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    async putObject(bucket, key, body) {
      const buf = typeof body === 'string' ? Buffer.from(body) : body;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: buf, ContentLength: buf.length }));
    },
    lake(bucket, prefix = '', opts = {}) {
      const lake = new S3Lake({ bucket, prefix, endpoint, ...opts });
      lakes.push(lake);
      return lake;
    },
    async stop() {
      for (const lake of lakes) await lake.close();
      client.destroy();
      await server.stop();
      restoreEnv(savedEnv);
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

interface S3rverProcess {
  port: number;
  stop(): Promise<void>;
}

async function startS3rverProcess(dir: string): Promise<S3rverProcess> {
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', S3RVER_PROCESS, dir], {
    cwd: REPO,
    // stderr inherited, not piped: a pipe would keep the test process alive as long as the child.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A test process that ends without stop() (a crash, Ctrl-C) takes its s3rver along.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('message', (m: { port: number }) => resolve(m.port));
      child.once('exit', (code, signal) => reject(new Error(`s3rver exited (${code ?? signal}) before listening (its stderr is above)`)));
    });
  } catch (err) {
    child.kill('SIGKILL');
    process.off('exit', killOnExit);
    throw err;
  }
  // Running, it must not keep the test process alive on its own.
  child.unref();
  child.channel?.unref();
  return {
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.ref();
        child.channel?.ref();
        child.send('stop');
        await exited;
      }
      process.off('exit', killOnExit);
    },
  };
}

function restoreEnv(saved: Map<string, string | undefined>): void {
  for (const [k, v] of saved) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}

/** What the proxy does to one request. */
export type ProxyFault =
  /** Answer with an S3 error document without forwarding (500 InternalError, 503 SlowDown...). */
  | { kind: 'status'; status: number; code: string }
  /** Forward, send the headers and `afterBytes` bytes of the body, then break the connection. */
  | { kind: 'cut'; afterBytes: number; mode?: 'reset' | 'close' }
  /** Break the connection before any response (the request is not forwarded). */
  | { kind: 'reset' };

export const SLOW_DOWN: ProxyFault = { kind: 'status', status: 503, code: 'SlowDown' };
export const INTERNAL_ERROR: ProxyFault = { kind: 'status', status: 500, code: 'InternalError' };

/** The S3 operation a request is, as far as a proxy can tell. */
export type S3Op = 'GetObject' | 'HeadObject' | 'PutObject' | 'CopyObject' | 'DeleteObject' | 'ListObjectsV2' | 'other';

export interface RequestInfo {
  op: S3Op;
  /** Object key without the bucket (path-style), '' for bucket-level requests. */
  key: string;
  range: string | undefined;
  method: string;
}

export interface FaultPlan {
  /**
   * The general form: decides per request (index = arrival order, from 0) what goes wrong, if
   * anything. When given, the fields below are ignored.
   */
  decide?: (req: RequestInfo, index: number) => ProxyFault | undefined;
  /** Which responses to cut; default: GetObject (a GET on /bucket/key without a sub-resource query). */
  match?: (req: http.IncomingMessage) => boolean;
  /** Bytes of the response body let through before the connection is cut. */
  cutAfterBytes?: number;
  /** How many matching responses are cut (default 1); later ones pass untouched. */
  times?: number;
  /** 'reset' sends a TCP RST (ECONNRESET at the client); 'close' ends the socket early (FIN). */
  mode?: 'reset' | 'close';
  /** Runs before each request is forwarded, e.g. to replace the object between attempts. */
  beforeForward?: (req: http.IncomingMessage, index: number) => Promise<void> | void;
}

export interface ProxiedRequest {
  method: string;
  url: string;
  op: S3Op;
  key: string;
  range: string | undefined;
  ifMatch: string | undefined;
  /** Date.now() on arrival. */
  at: number;
  status?: number;
  cut?: boolean;
  /** The fault injected, if any. */
  fault?: ProxyFault['kind'];
}

export interface FaultyProxy {
  endpoint: string;
  requests: ProxiedRequest[];
  /** Responses cut so far. */
  readonly cuts: number;
  /** Requests that got a fault of any kind. */
  readonly faults: number;
  /** Responses still being sent (a leak shows up here). */
  inflight(): number;
  stop(): Promise<void>;
}

function isGetObject(req: http.IncomingMessage): boolean {
  const url = new URL(req.url ?? '/', 'http://x');
  // The SDK adds ?x-id=GetObject; any other query names a sub-resource (acl, tagging, list...).
  const subresources = [...url.searchParams.keys()].filter((k) => k !== 'x-id');
  return req.method === 'GET' && url.pathname.split('/').filter(Boolean).length >= 2 && subresources.length === 0;
}

/** Classifies a path-style S3 request. */
export function s3Operation(req: http.IncomingMessage): { op: S3Op; key: string } {
  const url = new URL(req.url ?? '/', 'http://x');
  const parts = url.pathname.split('/').filter(Boolean);
  const key = parts.slice(1).map(decodeURIComponent).join('/');
  const query = [...url.searchParams.keys()].filter((k) => k !== 'x-id');
  const method = req.method ?? 'GET';
  if (parts.length >= 2) {
    if (method === 'GET' && query.length === 0) return { op: 'GetObject', key };
    if (method === 'HEAD') return { op: 'HeadObject', key };
    if (method === 'PUT' && req.headers['x-amz-copy-source']) return { op: 'CopyObject', key };
    if (method === 'PUT' && query.length === 0) return { op: 'PutObject', key };
    if (method === 'DELETE' && query.length === 0) return { op: 'DeleteObject', key };
    return { op: 'other', key };
  }
  if (method === 'GET' && url.searchParams.get('list-type') === '2') return { op: 'ListObjectsV2', key: '' };
  return { op: 'other', key: '' };
}

/** An HTTP proxy to `target` (http://host:port) that injects faults according to `plan`. */
export async function startFaultyProxy(target: string, plan: FaultPlan): Promise<FaultyProxy> {
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const match = plan.match ?? isGetObject;
  let remainingCuts = plan.times ?? 1;
  let cuts = 0;
  let faults = 0;
  let inflight = 0;
  const requests: ProxiedRequest[] = [];

  const legacy = (req: http.IncomingMessage): ProxyFault | undefined => {
    if (!match(req) || remainingCuts <= 0) return undefined;
    remainingCuts -= 1;
    return { kind: 'cut', afterBytes: plan.cutAfterBytes ?? 0, ...(plan.mode ? { mode: plan.mode } : {}) };
  };

  const server = http.createServer((req, res) => {
    const { op, key } = s3Operation(req);
    const record: ProxiedRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      op,
      key,
      range: header(req, 'range'),
      ifMatch: header(req, 'if-match'),
      at: Date.now(),
    };
    const index = requests.push(record) - 1;
    inflight += 1;
    res.once('close', () => {
      inflight -= 1;
    });
    void (async () => {
      await plan.beforeForward?.(req, index);
      const fault = plan.decide ? plan.decide({ op, key, range: record.range, method: record.method }, index) : legacy(req);
      if (fault) {
        faults += 1;
        record.fault = fault.kind;
      }
      if (fault?.kind === 'reset') {
        req.socket.resetAndDestroy();
        return;
      }
      if (fault?.kind === 'status') {
        // Read the request body first, as a server does before it answers.
        req.resume();
        await new Promise<void>((resolve) => (req.complete ? resolve() : req.once('end', resolve)));
        record.status = fault.status;
        const body =
          req.method === 'HEAD'
            ? ''
            : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected by the test proxy</Message>` +
              `<RequestId>proxy-${index}</RequestId></Error>`;
        res.writeHead(fault.status, {
          'content-type': 'application/xml',
          'content-length': Buffer.byteLength(body),
          'x-amz-request-id': `proxy-${index}`,
        });
        res.end(body);
        return;
      }
      // Headers go through untouched (Host included): the request is signed for them.
      const out = http.request({
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      });
      const response = new Promise<http.IncomingMessage>((resolve, reject) => {
        out.once('response', resolve);
        out.once('error', reject);
      });
      await pipeline(req, out);
      const up = await response;
      record.status = up.statusCode;
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (fault?.kind !== 'cut') {
        await pipeline(up, res);
        return;
      }
      record.cut = true;
      // Headers first, always: the fault under test is a body cut, not a failed request.
      res.flushHeaders();
      await pipeline(
        up,
        new Cutter(fault.afterBytes, () => {
          cuts += 1;
          const socket = res.socket;
          // Give the bytes already written a moment to leave, then break the connection.
          setTimeout(() => {
            if (fault.mode === 'close') socket?.destroy();
            else socket?.resetAndDestroy();
          }, 20);
        }),
        res,
      );
    })().catch(() => {
      // The client went away or we cut it on purpose: nothing to report.
      if (!res.headersSent) res.writeHead(502);
      res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    get cuts() {
      return cuts;
    },
    get faults() {
      return faults;
    },
    inflight: () => inflight,
    async stop() {
      server.closeAllConnections();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** Passes `limit` bytes, then stops passing anything and calls `onCut` once. */
class Cutter extends Transform {
  private passed = 0;
  private done = false;

  constructor(
    private readonly limit: number,
    private readonly onCut: () => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.done) {
      callback();
      return;
    }
    const room = this.limit - this.passed;
    if (chunk.length < room) {
      this.passed += chunk.length;
      callback(null, chunk);
      return;
    }
    this.passed += room;
    this.done = true;
    if (room > 0) this.push(chunk.subarray(0, room));
    callback();
    this.onCut();
  }
}
