// One small HTTP client for the observers (lineage events, Pushgateway): a deadline per
// attempt, one retry on what may heal (no answer, 5xx, 429), no connection left open after.

import http from 'node:http';
import https from 'node:https';
import { redact } from '../../domain/errors.js';

export interface HttpRequest {
  method: 'POST' | 'PUT';
  url: string;
  body: string;
  headers?: Record<string, string>;
  /** Per attempt. */
  timeoutMs: number;
  /** Further attempts after a failure that may heal. */
  retries: number;
}

const RETRY_DELAY_MS = 250;

function once(req: HttpRequest): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      reject(new HttpError(`not a URL: ${redact(req.url)}`, false));
      return;
    }
    const lib = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
    if (!lib) {
      reject(new HttpError(`unsupported scheme ${url.protocol} in ${redact(req.url)}`, false));
      return;
    }
    const body = Buffer.from(req.body, 'utf8');
    const r = lib.request(
      url,
      {
        method: req.method,
        // A one-shot CLI: no keep-alive socket may hold the process open after its result.
        agent: false,
        headers: { ...req.headers, 'content-length': String(body.length), connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(new HttpError(err.message, true));
        });
      },
    );
    const timer = setTimeout(() => r.destroy(new HttpError(`no answer within ${req.timeoutMs / 1000} s`, true)), req.timeoutMs);
    r.on('error', (err) => {
      clearTimeout(timer);
      reject(err instanceof HttpError ? err : new HttpError(err.message, true));
    });
    r.end(body);
  });
}

export class HttpError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Sends a request; resolves on a 2xx answer, rejects with an HttpError otherwise. */
export async function send(req: HttpRequest): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await once(req);
      if (res.status >= 200 && res.status < 300) return;
      const detail = res.body.trim().replace(/\s+/g, ' ').slice(0, 200);
      throw new HttpError(`HTTP ${res.status}${detail ? `: ${detail}` : ''}`, res.status >= 500 || res.status === 429);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(err instanceof Error ? err.message : String(err), true);
      if (!e.retryable || attempt >= req.retries) throw e;
      await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
    }
  }
}
