// What the benchmark runs beside the engines: databases in the embedded PostgreSQL, and s3rver.

import { createReadStream, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

/** A new, empty database; with `template`, a copy of that database (which must have no sessions). */
export async function newDatabase(adminUrl: string, name: string, template?: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}"`);
    await client.query(`CREATE DATABASE "${name}"${template ? ` TEMPLATE "${template}"` : ''}`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUrl);
  u.pathname = '/' + name;
  return u.toString();
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}"`);
  } finally {
    await client.end();
  }
}

export interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: { closeAllConnections(): void };
}

export const S3_CREDS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

export async function startS3(dir: string): Promise<{ endpoint: string; client: S3Client; stop: () => Promise<void> }> {
  const S3rver = createRequire(import.meta.url)('s3rver') as new (o: Record<string, unknown>) => S3rverInstance;
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, resetOnClose: false });
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = new S3Client({
    endpoint,
    region: S3_CREDS.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: S3_CREDS.AWS_ACCESS_KEY_ID, secretAccessKey: S3_CREDS.AWS_SECRET_ACCESS_KEY },
    // Without it a streamed body is stored with its aws-chunked framing (platform notes).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    client,
    stop: async () => {
      client.destroy();
      server.httpServer?.closeAllConnections();
      await server.close();
    },
  };
}

export async function uploadLake(client: S3Client, bucket: string, prefix: string, dir: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const files = [
    'songs.csv',
    'users.csv',
    ...readdirSync(join(dir, 'streams'))
      .filter((f) => f.endsWith('.csv'))
      .map((f) => `streams/${f}`),
  ];
  for (const f of files) {
    const path = join(dir, f);
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/${f}`, Body: createReadStream(path), ContentLength: statSync(path).size }),
    );
  }
}

/** s3rver's own serving speed: every stream object downloaded and dropped (no parsing). */
export async function rawGet(client: S3Client, bucket: string, prefix: string, dir: string): Promise<{ ms: number; bytes: number }> {
  const start = performance.now();
  let bytes = 0;
  for (const f of readdirSync(join(dir, 'streams')).filter((x) => x.endsWith('.csv'))) {
    const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}/streams/${f}` }));
    for await (const chunk of r.Body as AsyncIterable<Uint8Array>) bytes += chunk.length;
  }
  return { ms: performance.now() - start, bytes };
}
