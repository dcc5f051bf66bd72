// Progress and log lines go to stderr (stdout carries results). Two formats: text (an ora
// spinner on an interactive terminal, plain timestamped lines otherwise: Airflow and cron logs)
// and json (one object per line and nothing else, for log shippers: CloudWatch, Loki, …).
// Every line of stderr, the failure line included, is written here so that a json log never
// holds a stray plain line.

import type { Ora } from 'ora';
import type { PipelineEvent } from '../pipeline/pipeline.js';
import { redact } from '../domain/errors.js';

export type LogFormat = 'text' | 'json';
/** How much is written: info (default), verbose (each stage and file), debug (everything). */
export type Verbosity = 'info' | 'verbose' | 'debug';
/** The severity of one line (the `level` of a json line). */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Where lines go: stderr, or a fake in tests. */
export interface LogStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** How one line is written: what every writer of stderr needs. */
export interface LogOptions {
  /** Default text. */
  format?: LogFormat;
  /** ANSI colour in text lines (yellow warnings, red errors, dim debug). Default off. */
  color?: boolean;
  /** In every json line as `run_id`. */
  runId?: string;
  /** In every json line as `command`, and in the text failure line. */
  command?: string;
  /** Default process.stderr. */
  stream?: LogStream;
  /** Milliseconds since the epoch (Date.now by default; a fake clock in tests). */
  now?: () => number;
}

export interface ProgressOptions extends LogOptions {
  /** Nothing at all (--quiet, --silent). */
  quiet: boolean;
  /** A spinner is allowed (a terminal, not CI); text format only. */
  interactive: boolean;
  /** Default info. */
  level?: Verbosity;
}

export interface Progress {
  event(e: PipelineEvent): void;
  /** An info line. */
  log(message: string): void;
  warn(message: string): void;
  /** A line written only with --debug (SQL, timings, internals). */
  debug(message: string, fields?: Record<string, unknown>): void;
  stop(): void;
}

/** What a failure line says (the report's error shape). */
export interface ErrorLine {
  code: string;
  message: string;
  hint?: string | null;
  stage?: string | null;
}

/** Progress lines at the info level come at most this often (the spinner shows every update). */
export const PROGRESS_INTERVAL_MS = 5000;

const ANSI = { red: '\u001b[31m', yellow: '\u001b[33m', dim: '\u001b[2m', reset: '\u001b[39m', undim: '\u001b[22m' };

function paint(color: boolean | undefined, level: LogLevel, text: string): string {
  if (!color) return text;
  if (level === 'error') return `${ANSI.red}${text}${ANSI.reset}`;
  if (level === 'warn') return `${ANSI.yellow}${text}${ANSI.reset}`;
  if (level === 'debug') return `${ANSI.dim}${text}${ANSI.undim}`;
  return text;
}

const ENVELOPE = new Set(['time', 'level', 'run_id', 'command', 'event', 'message']);

/** One json line: the envelope (time, level, run_id, command, event, message), then the event's fields. */
export function jsonLine(opts: LogOptions, level: LogLevel, event: string, message: string, fields: Record<string, unknown> = {}): string {
  const record: Record<string, unknown> = {
    time: new Date((opts.now ?? Date.now)()).toISOString(),
    level,
    run_id: opts.runId ?? null,
    command: opts.command ?? null,
    event,
    message: redact(message),
  };
  // A URL with a password can hide in any string field; no field may overwrite the envelope.
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined && !ENVELOPE.has(k)) record[k] = typeof v === 'string' ? redact(v) : v;
  }
  return JSON.stringify(record) + '\n';
}

/**
 * Writes a failure in the configured format: text is `musickpi <command>: CODE: message` and an
 * indented hint (and, for an internal error, the stack); json is one `error` line carrying code,
 * hint, stage (and stack). Failures are written whatever --quiet says.
 */
export function writeErrorLine(error: ErrorLine, opts: LogOptions = {}, cause?: unknown): void {
  const stream = opts.stream ?? process.stderr;
  const stack = error.code === 'MKPI_INTERNAL' && cause instanceof Error && cause.stack ? redact(cause.stack) : undefined;
  if (opts.format === 'json') {
    stream.write(
      jsonLine(opts, 'error', 'error', error.message, { code: error.code, hint: error.hint ?? null, stage: error.stage ?? null, stack }),
    );
    return;
  }
  const head = `musickpi${opts.command ? ' ' + opts.command : ''}: ${error.code}: ${redact(error.message)}`;
  stream.write(paint(opts.color, 'error', head) + '\n');
  if (error.hint) stream.write(`  hint: ${redact(error.hint)}\n`);
  if (stack) stream.write(stack + '\n');
}

/** Writes a warning outside a progress (before or after the run): `musickpi: warning: …` or a json `warn` line. */
export function writeWarningLine(message: string, opts: LogOptions = {}): void {
  const stream = opts.stream ?? process.stderr;
  if (opts.format === 'json') stream.write(jsonLine(opts, 'warn', 'warn', message));
  else stream.write(paint(opts.color, 'warn', `musickpi: warning: ${redact(message)}`) + '\n');
}

function fmtRows(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

const QUIET: Progress = { event() {}, log() {}, warn() {}, debug() {}, stop() {} };

type OraFactory = typeof import('ora').default;
let ora: OraFactory | undefined;

/** Whether a progress with these options draws a spinner. */
function spinnerWanted(opts: ProgressOptions): boolean {
  const stream = opts.stream ?? process.stderr;
  // A spinner only on a real terminal of known width: ora's redraw divides by the width, and on a
  // 0-column pseudo-terminal (`script`, `docker exec -t`, some CI runners) it never finishes a frame.
  return !opts.quiet && opts.format !== 'json' && opts.interactive && Boolean(stream.isTTY) && (stream.columns ?? 0) > 0;
}

/**
 * Loads the spinner's module when these options will draw one; createProgress then uses it. ora
 * and its dependencies cost ~50 ms to import, which a run in a scheduler (no terminal) never needs.
 */
export async function loadSpinner(opts: ProgressOptions): Promise<void> {
  if (spinnerWanted(opts)) ora ??= (await import('ora')).default;
}

export function createProgress(opts: ProgressOptions): Progress {
  if (opts.quiet) return QUIET;
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? Date.now;
  const json = opts.format === 'json';
  const verbosity = opts.level ?? 'info';
  const verbose = verbosity !== 'info';
  const debugging = verbosity === 'debug';
  // A terminal without a loaded spinner (loadSpinner not awaited) gets the plain lines.
  const spinnerOf = spinnerWanted(opts) ? ora : undefined;
  const tty = spinnerOf !== undefined;
  let spinner: Ora | undefined;
  let streamStart = now();
  // The first info-level progress line comes one interval into reading (a short run has none).
  let lastLine = streamStart;
  let lastFiles = -1;

  const line = (level: LogLevel, event: string, message: string, fields?: Record<string, unknown>) => {
    if (json) {
      stream.write(jsonLine({ runId: opts.runId, command: opts.command, now }, level, event, message, fields));
      return;
    }
    if (spinner?.isSpinning) spinner.clear();
    const text = level === 'warn' ? `warning: ${message}` : message;
    stream.write(`${tty ? '' : new Date(now()).toISOString() + ' '}${paint(opts.color, level, redact(text))}\n`);
    if (spinner?.isSpinning) spinner.render();
  };

  return {
    event(e) {
      switch (e.type) {
        case 'stage':
          if (e.stage === 'streams') {
            streamStart = now();
            lastLine = streamStart;
            lastFiles = -1;
          }
          if (spinnerOf) {
            if (spinner) spinner.text = e.message;
            else spinner = spinnerOf({ text: e.message, stream: stream as NodeJS.WriteStream, color: opts.color ? 'cyan' : false }).start();
            if (verbose) line('info', 'stage', e.message, { stage: e.stage });
          } else line('info', 'stage', e.message, { stage: e.stage });
          break;
        case 'progress': {
          const t = now();
          const secs = (t - streamStart) / 1000;
          const rate = secs > 0 ? e.rows / secs : 0;
          const text = `reading streams: ${fmtRows(e.rows)} rows (${fmtRows(rate)} rows/s), file ${Math.min(e.files + 1, e.totalFiles)}/${e.totalFiles}`;
          const fields = { rows: e.rows, files: e.files, totalFiles: e.totalFiles };
          // A file finished (or the first rows arrived): a line at verbose; every update at debug.
          const fileEvent = e.files !== lastFiles;
          lastFiles = e.files;
          if (spinner) {
            spinner.text = text;
            if ((verbose && fileEvent) || debugging) line('debug', 'progress', text, fields);
          } else if (t - lastLine >= PROGRESS_INTERVAL_MS) {
            lastLine = t;
            line('info', 'progress', text, fields);
          } else if ((verbose && fileEvent) || debugging) {
            line('debug', 'progress', text, fields);
          }
          break;
        }
        case 'warn':
          line('warn', 'warn', e.message);
          break;
        case 'info':
          line('info', 'info', e.message);
          break;
      }
    },
    log: (m) => line('info', 'info', m),
    warn: (m) => line('warn', 'warn', m),
    debug: (m, fields) => {
      if (debugging) line('debug', 'debug', m, fields);
    },
    stop() {
      spinner?.stop();
      spinner = undefined;
    },
  };
}
