import { lakeOptions, outputOptions, warehouseOptions } from '../options.js';
import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule(
  'archive',
  'move the stream files that committed loads read into the archive',
  (y) => warehouseOptions(lakeOptions(outputOptions(y))),
  [['$0 archive --lake ./lake', 'finish the archive step after an exit 74']],
);
