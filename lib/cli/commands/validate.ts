import { lakeOptions, outputOptions } from '../options.js';
import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule(
  'validate',
  'check schemas and scan every row; report counts and reject reasons; writes nothing',
  (y) =>
    lakeOptions(outputOptions(y))
      .option('max-bad-rows', { type: 'number', default: 0, describe: 'bad stream rows tolerated before exit 65' })
      .option('max-orphan-rows', { type: 'number', describe: 'orphan rows tolerated [default: no limit]' }),
  [['$0 validate --lake s3://bucket/music --max-bad-rows 100 --json', 'the gate alone']],
);
