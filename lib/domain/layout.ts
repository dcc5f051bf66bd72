// Where a lake keeps its files (docs/contract.md §1); every path is configurable.

export interface LakeLayout {
  songs: string;
  users: string;
  /** Prefix of new stream files, with a trailing '/'. */
  streams: string;
  /** Prefix of archived stream files, with a trailing '/'. */
  archive: string;
  /** Prefix retracted stream files move to, with a trailing '/'; never read as input. */
  retracted: string;
  /** Whether stream files in folders under `streams` are read too. */
  recursive: boolean;
}

export const DEFAULT_LAYOUT: LakeLayout = {
  songs: 'songs.csv',
  users: 'users.csv',
  streams: 'streams/',
  archive: 'streams/archived/',
  retracted: 'streams/retracted/',
  recursive: false,
};

export function normalisePrefix(p: string): string {
  const s = p.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return s === '' ? '' : s + '/';
}
