// Where a lake keeps its files (docs/contract.md §1); every path is configurable.

export interface LakeLayout {
  songs: string;
  users: string;
  /** Prefix of new stream files, with a trailing '/'. */
  streams: string;
  /** Prefix of archived stream files, with a trailing '/'. */
  archive: string;
}

export const DEFAULT_LAYOUT: LakeLayout = {
  songs: 'songs.csv',
  users: 'users.csv',
  streams: 'streams/',
  archive: 'streams/archived/',
};

export function normalisePrefix(p: string): string {
  const s = p.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return s === '' ? '' : s + '/';
}
