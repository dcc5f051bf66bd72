import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { commandModule } from '../execute.js';
import { required } from '../config.js';
import { MkpiError } from '../../domain/errors.js';
import type * as Data from '../report/data.js';
import type * as Text from '../report/text.js';
import type * as Html from '../report/html.js';

// The report's readers and renderers (the page's HTML and SVG) load when `report` runs, not in
// every command's start-up. require(): the same module cache as the static imports.
const load = createRequire(import.meta.url);

/** The --html page, written whole or not at all (a half-written page must not look like a report). */
function writePage(file: string, html: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(tmp, html);
    renameSync(tmp, file);
  } catch (err) {
    throw new MkpiError('MKPI_CONFIG', `cannot write --html ${file}: ${err instanceof Error ? err.message : String(err)}`, {
      hint: 'choose a file in a folder you can write to',
      cause: err,
    });
  }
}

export const command = commandModule({
  command: 'report',
  describe:
    'show the KPIs of the latest loaded date (or --date / --start --end) and the last runs; --html writes them as a page with charts',
  examples: [
    ['$0 report', ''],
    ['$0 report --date 2024-06-01 --html report.html', ''],
  ],
  async run(rt) {
    const { schema } = required(rt.config.warehouse, 'warehouse');
    // Read defensively: the option is declared by the configuration of the report command.
    const html = (rt.config as { html?: unknown }).html;
    const { loadReportData } = load('../report/data.js') as typeof Data;
    const { renderText } = load('../report/text.js') as typeof Text;
    const data = await loadReportData(await rt.warehouse(), { schema, dates: rt.config.window?.dates });
    let text = renderText(data);
    let page: string | undefined;
    if (typeof html === 'string' && html !== '') {
      const { renderHtml } = load('../report/html.js') as typeof Html;
      writePage(html, renderHtml(data, { generatedAt: new Date() }));
      page = html;
      text += `\nreport page: ${html}\n`;
    }
    return { json: { command: 'report', ok: true, ...data, ...(page ? { html: page } : {}) }, text };
  },
});
