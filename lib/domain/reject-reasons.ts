// Why a row is left out (docs/contract.md §4, §5): stable codes, in the order they are checked.

export const REJECT_REASONS = [
  'malformed',
  'missing_user_id',
  'missing_track_id',
  'bad_listen_time',
  'unknown_track',
  'unknown_user',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];
export const BAD_ROW_REASONS: readonly RejectReason[] = REJECT_REASONS.slice(0, 4);
export const ORPHAN_REASONS: readonly RejectReason[] = REJECT_REASONS.slice(4);

export const REASON_MALFORMED = 0;
export const REASON_MISSING_USER_ID = 1;
export const REASON_MISSING_TRACK_ID = 2;
export const REASON_BAD_LISTEN_TIME = 3;
export const REASON_UNKNOWN_TRACK = 4;
export const REASON_UNKNOWN_USER = 5;

export const SONG_REJECT_REASONS = ['malformed', 'missing_track_id', 'missing_track_genre', 'bad_duration_ms', 'value_too_long'] as const;
export type SongRejectReason = (typeof SONG_REJECT_REASONS)[number];
export const USER_REJECT_REASONS = ['malformed', 'missing_user_id'] as const;
export type UserRejectReason = (typeof USER_REJECT_REASONS)[number];

/**
 * A valid dimension row whose ID an earlier valid row already holds (contract §4.1): listed in the
 * rejects CSV, but not a reject reason of the report. It is counted as `duplicates`, apart from
 * `rejected`, and no threshold applies to it.
 */
export const SONG_DUPLICATE_REASON = 'duplicate_track_id';
export const USER_DUPLICATE_REASON = 'duplicate_user_id';
export type DuplicateReason = typeof SONG_DUPLICATE_REASON | typeof USER_DUPLICATE_REASON;

/** Every code the rejects CSV's `reason` column can hold. */
export type RejectsCsvReason = RejectReason | SongRejectReason | UserRejectReason | DuplicateReason;
