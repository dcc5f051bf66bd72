// A small OpenLineage client, written from the spec (OpenLineage.json 2-0-2 and its facets):
// one RunEvent START when a pipeline command starts and one COMPLETE, FAIL or ABORT when it
// ends, with the lake files read and the KPI tables written. Transports: HTTP (OPENLINEAGE_URL,
// POST /api/v1/lineage) and a file of one event per line (--openlineage-file; /dev/stderr makes
// it a console transport). A lineage failure is one warning per transport, never the run's failure.

import { appendFile } from 'node:fs/promises';
import type { Config, ObserveConfig } from '../config.js';
import type { RunEnd, RunObserver, RunStart } from './observer.js';
import { REJECT_REASONS } from '../../domain/reject-reasons.js';
import type { RunReport } from '../../pipeline/report.js';
import type { KpiTable } from '../../domain/kpi.js';
import { customFacetSchemaUrl, musickpiVersion, producerUrl } from './producer.js';
import { airflowTaskRunId, lineageRunId, logicalDateOfDagRunId, UUID_PATTERN } from './uuid.js';
import { isEmbeddedWarehouse, lakeNamer, warehouseNamespace, type DatasetId, type LakeNamer } from './dataset-names.js';
import { asRunReport, streamFilesRead } from './report-view.js';
import { send } from './http.js';

// ---------------------------------------------------------------------------------------------
// The event model (the parts musickpi emits)

export type EventType = 'START' | 'COMPLETE' | 'FAIL' | 'ABORT';

export interface Facet {
  _producer: string;
  _schemaURL: string;
  [field: string]: unknown;
}

export type Facets = Record<string, Facet>;

export interface Dataset extends DatasetId {
  facets?: Facets;
}

export interface InputDataset extends Dataset {
  inputFacets?: Facets;
}

export interface OutputDataset extends Dataset {
  outputFacets?: Facets;
}

export interface RunEvent {
  eventType: EventType;
  eventTime: string;
  producer: string;
  schemaURL: string;
  run: { runId: string; facets: Facets };
  job: { namespace: string; name: string; facets: Facets };
  inputs: InputDataset[];
  outputs: OutputDataset[];
}

const SPEC = 'https://openlineage.io/spec';
export const SCHEMA_URLS = {
  event: `${SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent`,
  schema: `${SPEC}/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet`,
  inputStatistics: `${SPEC}/facets/1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet`,
  dataQualityMetrics: `${SPEC}/facets/1-0-3/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet`,
  outputStatistics: `${SPEC}/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet`,
  errorMessage: `${SPEC}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet`,
  parent: `${SPEC}/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet`,
  nominalTime: `${SPEC}/facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet`,
  processingEngine: `${SPEC}/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet`,
  jobType: `${SPEC}/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet`,
} as const;

function facet(schemaURL: string, fields: Record<string, unknown>): Facet {
  return { _producer: producerUrl(), _schemaURL: schemaURL, ...fields };
}

// ---------------------------------------------------------------------------------------------
// Schemas of the datasets (docs/contract.md §1, §9.1)

type Field = { name: string; type?: string; description?: string };

const CSV_COLUMNS = {
  songs: ['track_id', 'artists', 'track_genre', 'duration_ms'],
  users: ['user_id', 'user_age', 'user_country'],
  streams: ['user_id', 'track_id', 'listen_time'],
} as const;

export const KPI_TABLE_NAMES: Record<KpiTable, 'hourly_kpis' | 'genre_level_kpis'> = { hourly: 'hourly_kpis', genre: 'genre_level_kpis' };

const TABLE_COLUMNS: Record<'hourly_kpis' | 'genre_level_kpis', Field[]> = {
  hourly_kpis: [
    { name: 'listen_date', type: 'DATE', description: 'UTC date of the listens' },
    { name: 'listen_hour', type: 'INT', description: 'UTC hour of the listens, 0-23' },
    { name: 'unique_listeners', type: 'INT', description: 'distinct users of the hour' },
    { name: 'listen_counts', type: 'INT', description: 'complete stream rows of the hour' },
    { name: 'top_artist', type: 'VARCHAR(255)', description: 'artist credited with the most rows' },
    { name: 'avg_sessions_per_user', type: 'FLOAT', description: 'listen_counts / unique_listeners' },
    { name: 'diversity_index', type: 'FLOAT', description: 'distinct tracks / listen_counts' },
    { name: 'most_engaged_age_group', type: 'VARCHAR(255)', description: 'age group with the most rows' },
  ],
  genre_level_kpis: [
    { name: 'listen_date', type: 'DATE', description: 'UTC date of the listens' },
    { name: 'track_genre', type: 'VARCHAR(255)', description: 'genre of the tracks' },
    { name: 'listen_count', type: 'INT', description: 'complete rows of the date in this genre' },
    { name: 'popularity_index', type: 'FLOAT', description: "listen_count / the date's complete rows" },
    { name: 'average_duration', type: 'FLOAT', description: 'mean track duration in seconds, weighted by listens' },
    { name: 'most_popular_track_id', type: 'VARCHAR(255)', description: 'track of the genre with the most rows' },
  ],
};

function schemaFacet(fields: readonly (string | Field)[]): Facet {
  return facet(SCHEMA_URLS.schema, {
    fields: fields.map((f, i) => ({ ...(typeof f === 'string' ? { name: f } : f), ordinal_position: i + 1 })),
  });
}

// ---------------------------------------------------------------------------------------------
// Building the events

export interface LineageContext {
  namespace: string;
  /** The parent run facet, when the run hangs under another (an Airflow task). */
  parent: Facet | undefined;
  lake: LakeNamer | undefined;
  layout: { songs: string; users: string } | undefined;
  schema: string | undefined;
  embeddedWarehouse: boolean;
  window: Config['window'];
}

export function lineageContext(config: Readonly<Config>, warn: (message: string) => void): LineageContext {
  return {
    namespace: config.observe.openlineage.namespace,
    parent: parentFacet(config.observe, warn),
    lake: config.lake ? lakeNamer(config.lake.uri) : undefined,
    layout: config.lake?.layout,
    schema: config.warehouse?.schema,
    embeddedWarehouse: isEmbeddedWarehouse(config),
    window: config.window,
  };
}

/**
 * The parent run: OPENLINEAGE_PARENT_ID ("namespace/job/runId", what the Airflow provider's
 * `lineage_parent_id` macro renders), else the Airflow task run id computed the way the provider
 * computes it (from AIRFLOW_CTX_*: the logical date read from the DAG run id, the try number,
 * an unmapped task). A custom DAG run id carries no date: then there is no parent facet.
 */
export function parentFacet(observe: ObserveConfig, warn: (message: string) => void): Facet | undefined {
  const p = observe.openlineage.parent;
  if (!p) return undefined;
  let runId = p.runId;
  if (runId !== undefined) {
    if (!UUID_PATTERN.test(runId)) {
      warn(`OPENLINEAGE_PARENT_ID: ${JSON.stringify(runId)} is not a run id (a UUID); lineage events go without a parent run`);
      return undefined;
    }
  } else {
    const a = observe.airflow;
    const logicalDate = a?.dagRunId ? logicalDateOfDagRunId(a.dagRunId) : undefined;
    const tryNumber = a?.tryNumber !== undefined && /^\d+$/.test(a.tryNumber) ? Number(a.tryNumber) : undefined;
    if (!a?.taskId || !logicalDate || tryNumber === undefined) return undefined;
    runId = airflowTaskRunId({ namespace: p.namespace, dagId: a.dagId, taskId: a.taskId, tryNumber, logicalDate, mapIndex: -1 });
    if (!runId) return undefined;
  }
  return facet(SCHEMA_URLS.parent, { run: { runId: runId.toLowerCase() }, job: { namespace: p.namespace, name: p.job } });
}

export function eventTypeOf(exitCode: number): EventType {
  if (exitCode === 0) return 'COMPLETE';
  return exitCode === 130 || exitCode === 143 ? 'ABORT' : 'FAIL';
}

function runFacets(ctx: LineageContext, e: RunStart, end?: RunEnd, report?: RunReport): Facets {
  const facets: Facets = {};
  if (ctx.parent) facets.parent = ctx.parent;
  const version = musickpiVersion();
  facets.processing_engine = facet(SCHEMA_URLS.processingEngine, { name: 'musickpi', version, openlineageAdapterVersion: version });
  if (ctx.window && ctx.window.dates.length > 0) {
    const last = new Date(Date.parse(ctx.window.dates[ctx.window.dates.length - 1] + 'T00:00:00Z') + 86_400_000);
    facets.nominalTime = facet(SCHEMA_URLS.nominalTime, {
      nominalStartTime: `${ctx.window.dates[0]}T00:00:00Z`,
      nominalEndTime: last.toISOString().replace(/\.000Z$/, 'Z'),
    });
  }
  const error = end?.error ?? report?.error ?? undefined;
  facets.musickpi_run = facet(customFacetSchemaUrl('MusickpiRunFacet'), {
    runId: e.runId,
    command: e.command,
    ...(report ? { dryRun: report.dryRun } : {}),
    ...(end ? { exitCode: end.exitCode, ok: end.exitCode === 0 } : {}),
    ...(end && error ? { error: { code: error.code, stage: error.stage, hint: error.hint } } : {}),
  });
  if (end && end.exitCode !== 0 && error) {
    facets.errorMessage = facet(SCHEMA_URLS.errorMessage, {
      message: `${error.code}: ${error.message}`,
      programmingLanguage: 'JavaScript',
    });
  }
  return facets;
}

function job(ctx: LineageContext, command: string): RunEvent['job'] {
  return {
    namespace: ctx.namespace,
    name: `musickpi.${command}`,
    facets: { jobType: facet(SCHEMA_URLS.jobType, { processingType: 'BATCH', integration: 'MUSICKPI', jobType: 'JOB' }) },
  };
}

function rowFacets(rows: number, bytes: number, rejects?: Record<string, unknown>): Facets {
  const out: Facets = {
    inputStatistics: facet(SCHEMA_URLS.inputStatistics, { rowCount: rows, size: bytes, fileCount: 1 }),
  };
  if (rejects) {
    // columnMetrics is required, but a row is rejected for one reason, not per column: the
    // counts per reason go in musickpi's own facet.
    out.dataQualityMetrics = facet(SCHEMA_URLS.dataQualityMetrics, { rowCount: rows, bytes, fileCount: 1, columnMetrics: {} });
    out.musickpi_rejects = facet(customFacetSchemaUrl('MusickpiRejectsInputDatasetFacet'), rejects);
  }
  return out;
}

function dimensionInputs(ctx: LineageContext, report: RunReport | undefined): InputDataset[] {
  if (!ctx.lake || !ctx.layout) return [];
  const out: InputDataset[] = [];
  for (const which of ['songs', 'users'] as const) {
    const d = report?.dimensions[which];
    const key = d?.file ?? ctx.layout[which];
    const input: InputDataset = { ...ctx.lake(key), facets: { schema: schemaFacet(CSV_COLUMNS[which]) } };
    if (d) {
      input.inputFacets = rowFacets(d.rows, d.bytes, {
        rowsRead: d.rows,
        validRows: d.valid,
        duplicateRows: d.duplicates,
        rejected: { ...d.rejected },
      });
    }
    out.push(input);
  }
  return out;
}

function streamInputs(ctx: LineageContext, report: RunReport): InputDataset[] {
  if (!ctx.lake) return [];
  const byName = new Map(report.files.map((f) => [f.name, f]));
  return streamFilesRead(report).map((f) => {
    const file = byName.get(f.name);
    const counted = !f.reread && file;
    const rejects = counted
      ? {
          rowsRead: file.rows,
          completeRows: file.complete,
          rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, file.rejected[r] ?? 0])),
          ...(file.status === 'schema_error' ? { schemaError: file.error ?? 'schema error' } : {}),
        }
      : undefined;
    return { ...ctx.lake!(f.name), facets: { schema: schemaFacet(CSV_COLUMNS.streams) }, inputFacets: rowFacets(f.rows, f.bytes, rejects) };
  });
}

function tableOutputs(ctx: LineageContext, report: RunReport): OutputDataset[] {
  if (!report.warehouse || !ctx.schema || report.dryRun || !['run', 'compute', 'retract'].includes(report.command)) return [];
  const wh = warehouseNamespace(report.warehouse, ctx.embeddedWarehouse);
  if (!wh) return [];
  return report.kpis.map((kpi) => {
    const table = KPI_TABLE_NAMES[kpi];
    return {
      namespace: wh.namespace,
      name: `${wh.database}.${ctx.schema}.${table}`,
      facets: { schema: schemaFacet(TABLE_COLUMNS[table]) },
      outputFacets: { outputStatistics: facet(SCHEMA_URLS.outputStatistics, { rowCount: report.rowsWritten[table] ?? 0 }) },
    };
  });
}

function envelope(eventType: EventType, at: Date): Pick<RunEvent, 'eventType' | 'eventTime' | 'producer' | 'schemaURL'> {
  return { eventType, eventTime: at.toISOString(), producer: producerUrl(), schemaURL: SCHEMA_URLS.event };
}

export function startEvent(ctx: LineageContext, e: RunStart): RunEvent {
  return {
    ...envelope('START', e.startedAt),
    run: { runId: lineageRunId(e.runId, e.startedAt), facets: runFacets(ctx, e) },
    job: job(ctx, e.command),
    inputs: e.command === 'archive' ? [] : dimensionInputs(ctx, undefined),
    outputs: [],
  };
}

export function endEvent(ctx: LineageContext, e: RunEnd): RunEvent {
  const report = asRunReport(e.result);
  let inputs: InputDataset[] = [];
  let outputs: OutputDataset[] = [];
  if (report && e.command === 'archive') {
    // Archiving moves files: each source is read, each destination written.
    if (ctx.lake) {
      inputs = report.archived.map((a) => ctx.lake!(a.from));
      outputs = report.archived.map((a) => ctx.lake!(a.to));
    }
  } else if (report) {
    inputs = [...dimensionInputs(ctx, report), ...streamInputs(ctx, report)];
    outputs = tableOutputs(ctx, report);
  } else if (e.command !== 'archive') {
    inputs = dimensionInputs(ctx, undefined);
  }
  return {
    ...envelope(eventTypeOf(e.exitCode), e.finishedAt),
    run: { runId: lineageRunId(e.runId, e.startedAt), facets: runFacets(ctx, e, e, report) },
    job: job(ctx, e.command),
    inputs,
    outputs,
  };
}

// ---------------------------------------------------------------------------------------------
// Transports

export interface Transport {
  /** For warnings: where events go (never a secret). */
  readonly target: string;
  emit(event: RunEvent, retries: number): Promise<void>;
}

export const HTTP_TIMEOUT_MS = 5000;

export function httpTransport(url: string, apiKey: string | undefined, timeoutMs = HTTP_TIMEOUT_MS): Transport {
  const endpoint = `${url.replace(/\/+$/, '')}/api/v1/lineage`;
  return {
    target: endpoint,
    emit: (event, retries) =>
      send({
        method: 'POST',
        url: endpoint,
        body: JSON.stringify(event),
        headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
        timeoutMs,
        retries,
      }),
  };
}

export function fileTransport(path: string): Transport {
  // One write per event: appends of one line each do not interleave with another writer's.
  return { target: path, emit: (event) => appendFile(path, JSON.stringify(event) + '\n', { flag: 'a' }) };
}

export function transportsOf(observe: ObserveConfig): Transport[] {
  const out: Transport[] = [];
  const ol = observe.openlineage;
  if (ol.url) out.push(httpTransport(ol.url, ol.apiKey));
  if (ol.file) out.push(fileTransport(ol.file));
  return out;
}

// ---------------------------------------------------------------------------------------------
// The observer

export function openLineageObserver(
  config: Readonly<Config>,
  warn: (message: string) => void,
  transports = transportsOf(config.observe),
): RunObserver {
  const ctx = lineageContext(config, warn);
  const failed = new Set<Transport>();
  const emit = async (event: RunEvent) => {
    await Promise.all(
      transports.map(async (t) => {
        try {
          // After a failure, one attempt only: a dead endpoint costs a run one timeout, not four.
          await t.emit(event, failed.has(t) ? 0 : 1);
        } catch (err) {
          if (!failed.has(t)) {
            warn(
              `OpenLineage: cannot send the ${event.eventType} event to ${t.target} (${err instanceof Error ? err.message : String(err)}); ` +
                'lineage of this run may be incomplete, the run itself is not affected',
            );
          }
          failed.add(t);
        }
      }),
    );
  };
  const guarded = (build: () => RunEvent) => {
    let event: RunEvent;
    try {
      event = build();
    } catch (err) {
      // A report of an unexpected shape must not cost the run anything either.
      warn(`OpenLineage: cannot build the event (${err instanceof Error ? err.message : String(err)})`);
      return Promise.resolve();
    }
    return emit(event);
  };
  return {
    name: 'openlineage',
    start: (e) => guarded(() => startEvent(ctx, e)),
    finish: (e) => guarded(() => endEvent(ctx, e)),
  };
}
