import type { Argv, CommandModule } from 'yargs';
import { outputOptions, warehouseOptions, type OutputArgs, type WarehouseArgs } from '../options.js';
import { execute } from '../execute.js';
import { formatCell, table } from '../output.js';
import { csvField } from '../../domain/text.js';
import { MkpiError, isMkpiError } from '../../domain/errors.js';

type Args = WarehouseArgs & OutputArgs & { sql: string; csv: boolean };

export const command: CommandModule<object, Args> = {
  command: 'query <sql>',
  describe: "print a query's rows (the way to look into the embedded warehouse)",
  builder: (y: Argv) =>
    warehouseOptions(outputOptions(y))
      .positional('sql', { type: 'string', demandOption: true, describe: 'SQL to run' })
      .option('csv', { type: 'boolean', default: false, describe: 'print CSV' })
      .example("$0 query 'select * from reporting_schema.hourly_kpis order by 1, 2'", ''),
  handler: (args) =>
    execute(args, 'query', async (rt) => {
      if (args.json && args.csv) throw new MkpiError('MKPI_USAGE', '--json and --csv are mutually exclusive');
      const warehouse = await rt.openWarehouse(args);
      const { columns, rows } = await warehouse.query(args.sql).catch((err: unknown) => {
        // The statement is the user's input: a database error about it is a usage error, not a bug.
        if (isMkpiError(err) && err.code === 'MKPI_INTERNAL') {
          throw new MkpiError('MKPI_USAGE', err.message.replace(/^warehouse error while running a query: /, ''), {
            hint: 'the KPI tables are reporting_schema.hourly_kpis and reporting_schema.genre_level_kpis (after a first run or `musickpi init`)',
            cause: err,
          });
        }
        throw err;
      });
      if (args.json) {
        const objects = rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));
        process.stdout.write(JSON.stringify(objects, null, 2) + '\n');
      } else if (args.csv) {
        const lines = [columns.map(csvField).join(','), ...rows.map((r) => r.map((v) => csvField(formatCell(v))).join(','))];
        process.stdout.write(lines.join('\n') + '\n');
      } else {
        process.stdout.write(table(columns, rows));
      }
      return undefined;
    }),
};
