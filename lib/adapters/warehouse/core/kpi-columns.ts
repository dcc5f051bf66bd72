// The KPI tables' columns in the order both dialects stage them. Every statement names them
// explicitly, so a table whose columns are in another order (an adopted one) loads the same.

import { type GenreRow, type HourlyRow } from '../../../domain/kpi.js';

export const HOURLY_COLUMNS = [
  'listen_date',
  'listen_hour',
  'unique_listeners',
  'listen_counts',
  'top_artist',
  'avg_sessions_per_user',
  'diversity_index',
  'most_engaged_age_group',
] as const satisfies readonly (keyof HourlyRow)[];

export const GENRE_COLUMNS = [
  'listen_date',
  'track_genre',
  'listen_count',
  'popularity_index',
  'average_duration',
  'most_popular_track_id',
] as const satisfies readonly (keyof GenreRow)[];

/** The KPI tables' names in the warehouse. */
export const KPI_TABLE_NAMES = { hourly: 'hourly_kpis', genre: 'genre_level_kpis' } as const;
