import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule(
  'normalize',
  'warehouse engine: normalize one shard of a plan into staging (one scheduler task per shard; no warehouse needed)',
  [
    ['$0 normalize --lake s3://lake/music --run-id "$RUN_ID" --shard 3/16', 'the 4th of 16 shards'],
    [
      '$0 normalize --lake s3://lake/music --run-id "$RUN_ID" --shards 16',
      'the index from JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX',
    ],
  ],
);
