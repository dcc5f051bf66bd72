// s3rver in a process of its own, started by startS3 (s3.ts). s3rver encrypts ListObjectsV2
// continuation tokens with DES, which OpenSSL 3 (Node 17+) only has in its legacy provider:
// this process alone runs with --openssl-legacy-provider, so that neither mocha nor the CLI
// under test needs the flag. Protocol on the IPC channel: it sends { port } once listening,
// and stops on 'stop'; it also ends when the channel closes (the test process is gone).

import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverConstructor = new (opts: Record<string, unknown>) => S3rverInstance;

// s3rver is CommonJS without type declarations.
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

const send = (m: unknown) => new Promise<void>((resolve) => process.send!(m, undefined, {}, () => resolve()));

const directory = process.argv[2];
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, resetOnClose: false });
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  if (m !== 'stop') return;
  // Keep-alive sockets would hold close() open forever.
  server.httpServer?.closeAllConnections();
  void server.close().finally(() => process.exit(0));
});
const { port } = await server.run();
await send({ port });
