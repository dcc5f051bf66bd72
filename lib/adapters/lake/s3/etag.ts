import type { HeadObjectCommandOutput } from '@aws-sdk/client-s3';

export function stripQuotes(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

/** An ETag is the MD5 of the content only for single-part uploads that are not SSE-KMS/SSE-C encrypted. */
export function etagIsContentMd5(head: HeadObjectCommandOutput): boolean {
  const etag = stripQuotes(head.ETag);
  if (!/^[0-9a-f]{32}$/i.test(etag)) return false;
  const sse = head.ServerSideEncryption ?? '';
  return !sse.startsWith('aws:kms') && !head.SSECustomerAlgorithm;
}
