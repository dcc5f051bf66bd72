import type { Argv, CommandModule } from 'yargs';
import { outputOptions, warehouseOptions, type OutputArgs, type WarehouseArgs } from '../options.js';
import { execute } from '../execute.js';

type Args = WarehouseArgs & OutputArgs;

export const command: CommandModule<object, Args> = {
  command: 'init',
  describe: 'create the schema, the KPI tables and the ledger (idempotent)',
  builder: (y: Argv) => warehouseOptions(outputOptions(y)),
  handler: (args) =>
    execute(args, 'init', async (rt) => {
      const warehouse = await rt.openWarehouse(args);
      await warehouse.init();
      if (args.json)
        process.stdout.write(JSON.stringify({ command: 'init', ok: true, warehouse: warehouse.description, schema: args.schema }) + '\n');
      else process.stdout.write(`initialised schema ${args.schema} in ${warehouse.description}\n`);
      return undefined;
    }),
};
