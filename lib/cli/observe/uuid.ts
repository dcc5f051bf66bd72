// Run ids for OpenLineage: UUIDs (the spec's `format: uuid`), made deterministic so a START and
// its COMPLETE carry the same id without shared state, and so a parent's id can be recomputed.

import { createHash } from 'node:crypto';

/**
 * A UUIDv7 (RFC 9562) whose 48-bit prefix is `ms` (milliseconds since the epoch) and whose
 * other 74 free bits are the top 76 bits of `digest` less the version and variant bits. This is
 * the layout of the OpenLineage Python client's static UUIDs: time-ordered, stable for an input.
 */
function uuid7(ms: number, digest: Buffer): string {
  const node = BigInt('0x' + digest.toString('hex')) >> BigInt(digest.length * 8 - 76);
  let v = (BigInt(Math.trunc(ms)) & 0xffffffffffffn) << 80n;
  v |= node & ((1n << 80n) - 1n);
  v = (v & ~(0xfn << 76n)) | (7n << 76n); // version 7
  v = (v & ~(0x3n << 62n)) | (0x2n << 62n); // variant 10 (RFC 4122 / 9562)
  const hex = v.toString(16).padStart(32, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The OpenLineage run id of a musickpi run: stable for (run id, start time). */
export function lineageRunId(musickpiRunId: string, startedAt: Date): string {
  return uuid7(startedAt.getTime(), createHash('sha256').update(`musickpi:${musickpiRunId}`).digest());
}

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An ISO 8601 instant with an offset (Airflow's run ids and logical dates), as the UTC
 * milliseconds Python's `int(dt.timestamp() * 1000)` gives and the text of Python's
 * `dt.astimezone(timezone.utc).isoformat()` (microseconds only when not zero).
 */
export function pythonUtcInstant(iso: string): { ms: number; isoformat: string } | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:?\d{2})$/.exec(iso.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const micros = frac ? Number(frac.padEnd(6, '0')) : 0;
  let offsetMin = 0;
  if (zone !== 'Z') {
    const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
    offsetMin = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3]));
  }
  const wholeSeconds = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) / 1000 - offsetMin * 60;
  if (!Number.isFinite(wholeSeconds)) return undefined;
  const utc = new Date(wholeSeconds * 1000);
  if (utc.getUTCFullYear() < 1 || utc.getUTCFullYear() > 9999) return undefined;
  // timedelta.total_seconds() divides whole microseconds by 1e6; the same IEEE steps here.
  const seconds = (wholeSeconds * 1e6 + micros) / 1e6;
  const text = utc.toISOString().slice(0, 19) + (micros ? '.' + String(micros).padStart(6, '0') : '') + '+00:00';
  return { ms: Math.trunc(seconds * 1000), isoformat: text };
}

export interface AirflowTask {
  /** The OpenLineage namespace of the Airflow deployment ([openlineage] namespace, default "default"). */
  namespace: string;
  dagId: string;
  taskId: string;
  tryNumber: number;
  /** The DAG run's logical date (or run_after for Airflow 3 runs without one), ISO with an offset. */
  logicalDate: string;
  /** -1 for a task that is not mapped. */
  mapIndex: number;
}

/**
 * The run id the Airflow OpenLineage provider (2.x) gives a task instance: a static UUIDv7 of the
 * logical date and "namespace.dag_id.task_id.try_number.map_index", hashed with SHA-1 after the
 * date's isoformat(). The provider's `lineage_run_id` macro returns the same value.
 */
export function airflowTaskRunId(task: AirflowTask): string | undefined {
  const instant = pythonUtcInstant(task.logicalDate);
  if (!instant) return undefined;
  const data = `${task.namespace}.${task.dagId}.${task.taskId}.${task.tryNumber}.${task.mapIndex}`;
  return uuid7(
    instant.ms,
    createHash('sha1')
      .update(instant.isoformat + data, 'utf8')
      .digest(),
  );
}

/**
 * The logical date an Airflow DAG run id carries: Airflow names runs `<type>__<isoformat of the
 * logical date>` (scheduled__, manual__, backfill__, …). Custom run ids carry none.
 */
export function logicalDateOfDagRunId(dagRunId: string): string | undefined {
  const m = /^[a-z_]+?__(\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))$/.exec(dagRunId);
  return m && pythonUtcInstant(m[1]) ? m[1] : undefined;
}
