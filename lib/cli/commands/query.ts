import type { Argv } from 'yargs';
import { commandModule } from '../execute.js';
import { required } from '../config.js';
import { formatCell, table } from '../output.js';
import { csvField } from '../../domain/text.js';
import { MkpiError } from '../../domain/errors.js';

// Statements that change what musickpi owns. The ledger is how later runs know what the
// tables hold; edited by hand, the tables and the ledger disagree until the dates are recomputed.
const WRITES_OWNED =
  /^\s*(?:with\b[\s\S]*?\)\s*)?(?:insert\s+into|update|delete\s+from|truncate(?:\s+table)?|drop\s+table|alter\s+table)\s+(?:only\s+)?(?:if\s+exists\s+)?(?:"?[\w$]+"?\.)?"?(hourly_kpis|genre_level_kpis|musickpi_[\w$]+)"?/i;

export const command = commandModule({
  command: 'query',
  usage: 'query <sql>',
  describe: 'run one SQL statement in the warehouse and print its rows (search path: --schema, then public)',
  positionals: (y: Argv) => y.positional('sql', { type: 'string', describe: 'the SQL statement' }),
  positionalValues: (argv) => (typeof argv.sql === 'string' ? [argv.sql] : []),
  examples: [
    ["$0 query 'select * from hourly_kpis order by 1, 2'", ''],
    ["$0 query --csv 'select * from genre_level_kpis'", ''],
  ],
  async run(rt) {
    const { json } = rt.config.output;
    const csv = rt.config.csv;
    const { schema } = required(rt.config.warehouse, 'warehouse');
    const sql = rt.config.positional[0];
    if (sql === undefined || sql.trim() === '') throw new MkpiError('MKPI_USAGE', 'query needs an SQL statement');
    if (json && csv) throw new MkpiError('MKPI_USAGE', '--json and --csv are mutually exclusive');
    const owned = WRITES_OWNED.exec(sql)?.[1];
    if (owned) {
      rt.progress.warn(
        `this statement changes ${owned}, which musickpi keeps in step with its ledger; edited by hand, later runs do not know. ` +
          'To take a file back out use `musickpi retract`; to recompute dates, run `musickpi compute`.',
      );
    }
    const warehouse = await rt.warehouse();
    const res = await warehouse.query(sql);
    const objects = res.rows.map((r) => Object.fromEntries(res.columns.map((c, i) => [c, r[i]])));
    let text: string;
    if (csv) {
      const lines = [res.columns.map(csvField).join(','), ...res.rows.map((r) => r.map((v) => csvField(formatCell(v))).join(','))];
      text = res.columns.length > 0 ? lines.join('\n') + '\n' : '';
    } else if (res.columns.length > 0) {
      text = table(res.columns, res.rows);
    } else {
      // DML and DDL: the command tag, as psql prints it ("DELETE 3", "CREATE TABLE").
      text = `${res.command}${res.rowCount !== null && res.command !== 'CREATE' && res.command !== 'DROP' ? ` ${res.rowCount}` : ''}\n`;
    }
    void schema;
    return { json: objects, text };
  },
});
