// Where a lake keeps its files (docs/contract.md §1); every path is configurable.

export interface LakeLayout {
  songs: string;
  users: string;
  /** Prefix of new stream files, with a trailing '/'. */
  streams: string;
  /** Prefix of archived stream files, with a trailing '/'. Never read as new input. */
  archive: string;
  /**
   * Whether stream files in folders under the streams prefix count too (`streams/2024-06-03/x.csv`,
   * `streams/dt=2024-06-03/x.csv.gz`). False: nested objects are ignored.
   */
  recursive: boolean;
  /** Prefix retracted stream files move to (`musickpi retract`), with a trailing '/'. Never read as new input. */
  retracted: string;
}

export const DEFAULT_LAYOUT: LakeLayout = {
  songs: 'songs.csv',
  users: 'users.csv',
  streams: 'streams/',
  archive: 'streams/archived/',
  recursive: false,
  retracted: 'streams/retracted/',
};

export function normalisePrefix(p: string): string {
  const s = p.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return s === '' ? '' : s + '/';
}

/** Where retracted stream files go. */
export function retractedPrefix(layout: LakeLayout): string {
  return layout.retracted;
}

/** Prefixes whose objects are never stream-file input: the archive and the retracted files. */
export function excludedPrefixes(layout: LakeLayout): string[] {
  return [layout.archive, retractedPrefix(layout)];
}

const STREAM_FILE_NAME = /\.csv(\.gz)?$/i;
const GZIP_NAME = /\.gz$/i;

/** Whether a file name (or key) is that of a stream file: `*.csv` or `*.csv.gz`, case-insensitive (contract §1.2). */
export function isStreamFileName(name: string): boolean {
  return STREAM_FILE_NAME.test(name);
}

/** Whether an object is read through gunzip: its name ends in `.gz`, case-insensitive (contract §1.3). */
export function isGzipKey(key: string): boolean {
  return GZIP_NAME.test(key);
}

/** Where, under the lake root, the loaded dates' saved states live (lib/stages/date-state.ts): never under streams/. */
export const DATE_STATE_PREFIX = '_musickpi/state/';
