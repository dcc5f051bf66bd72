// The KPI tables of the contract (docs/contract.md §6, §7) as rows.

export type KpiTable = 'hourly' | 'genre';
export const KPI_TABLES: readonly KpiTable[] = ['hourly', 'genre'];

export interface HourlyRow {
  listen_date: string; // YYYY-MM-DD
  listen_hour: number;
  unique_listeners: number;
  listen_counts: number;
  top_artist: string | null;
  avg_sessions_per_user: number;
  diversity_index: number;
  most_engaged_age_group: string | null;
}

export interface GenreRow {
  listen_date: string;
  track_genre: string;
  listen_count: number;
  popularity_index: number;
  average_duration: number;
  most_popular_track_id: string;
}
