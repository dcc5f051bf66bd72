import { commandModule } from '../execute.js';
import { required } from '../config.js';

export const command = commandModule({
  command: 'init',
  describe: 'create or upgrade the schema, the KPI tables and the ledger (idempotent)',
  async run(rt) {
    const { schema } = required(rt.config.warehouse, 'warehouse');
    const warehouse = await rt.warehouse();
    await warehouse.init();
    return {
      json: { command: 'init', ok: true, warehouse: warehouse.description, schema },
      text: `initialised schema ${schema} in ${warehouse.description}\n`,
    };
  },
});
