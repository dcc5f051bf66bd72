import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule('archive', 'move the stream files that committed loads read into the archive', [
  ['$0 archive --lake ./lake', 'finish after an exit 74'],
]);
