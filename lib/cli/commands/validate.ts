import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule(
  'validate',
  'check schemas and scan every row; report counts and reject reasons; writes nothing to the warehouse',
  [
    ['$0 validate --lake ./lake', 'the gate alone'],
    ['$0 validate --lake ./lake --rejects /tmp/r', 'keep the rejects CSV'],
  ],
);
