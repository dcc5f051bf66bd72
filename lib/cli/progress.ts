// Progress and log lines go to stderr (stdout carries results): an ora spinner on a
// terminal, plain timestamped lines otherwise (Airflow and cron logs).

import ora, { type Ora } from 'ora';
import type { PipelineEvent } from '../pipeline/pipeline.js';
import { redact } from '../domain/errors.js';

export interface Progress {
  event(e: PipelineEvent): void;
  log(message: string): void;
  warn(message: string): void;
  stop(): void;
}

function fmtRows(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export function createProgress(opts: { quiet: boolean; interactive: boolean; stream?: NodeJS.WriteStream }): Progress {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { event() {}, log() {}, warn() {}, stop() {} };
  // A spinner only on a real terminal of known width: ora's redraw divides by the width, and on a
  // 0-column pseudo-terminal (`script`, `docker exec -t`, some CI runners) it never finishes a frame.
  const tty = opts.interactive && Boolean(stream.isTTY) && (stream.columns ?? 0) > 0;
  let spinner: Ora | undefined;
  let streamStart = 0;
  let lastLine = 0;
  const line = (s: string) => {
    if (spinner?.isSpinning) spinner.clear();
    stream.write(`${tty ? '' : new Date().toISOString() + ' '}${redact(s)}\n`);
    if (spinner?.isSpinning) spinner.render();
  };
  return {
    event(e) {
      switch (e.type) {
        case 'stage':
          if (e.stage === 'streams') streamStart = performance.now();
          if (tty) {
            if (spinner) spinner.text = e.message;
            else spinner = ora({ text: e.message, stream }).start();
          } else line(e.message);
          break;
        case 'progress': {
          const secs = (performance.now() - streamStart) / 1000;
          const rate = secs > 0 ? e.rows / secs : 0;
          const text = `reading streams: ${fmtRows(e.rows)} rows (${fmtRows(rate)} rows/s), file ${Math.min(e.files + 1, e.totalFiles)}/${e.totalFiles}`;
          if (spinner) spinner.text = text;
          else if (performance.now() - lastLine > 5000) {
            lastLine = performance.now();
            line(text);
          }
          break;
        }
        case 'warn':
          line(`warning: ${e.message}`);
          break;
        case 'info':
          line(e.message);
          break;
      }
    },
    log: line,
    warn: (m) => line(`warning: ${m}`),
    stop() {
      spinner?.stop();
      spinner = undefined;
    },
  };
}
