import { MkpiError, redact, type ErrorCode } from '../../../domain/errors.js';

interface S3ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

export function asS3Error(err: unknown): S3ErrorLike {
  return typeof err === 'object' && err !== null ? err : { message: String(err) };
}

export function errorName(err: unknown): string {
  const e = asS3Error(err);
  return e.name && e.name !== 'Error' ? e.name : (e.Code ?? e.code ?? e.name ?? 'Error');
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);
const UNAVAILABLE_NAMES = new Set([
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'RequestTimeoutException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TimeoutError',
  'NetworkingError',
]);
const NO_INPUT_NAMES = new Set(['NoSuchBucket', 'NoSuchKey', 'NotFound']);
const CONFIG_NAMES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'Forbidden',
  'AllAccessDisabled',
  'AccountProblem',
  'CredentialsProviderError',
  'PermanentRedirect',
  'AuthorizationHeaderMalformed',
  'InvalidBucketName',
  'IllegalLocationConstraintException',
]);

/** True for failures that may well succeed on another attempt (used to decide whether a read resumes). */
export function isTransientS3Error(err: unknown): boolean {
  if (err instanceof MkpiError) return err.code === 'MKPI_LAKE_UNAVAILABLE';
  const e = asS3Error(err);
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return true;
  if (UNAVAILABLE_NAMES.has(errorName(err))) return true;
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  // Node reports a body cut mid-way as "aborted" / "socket hang up" without a stable code on some paths.
  return /aborted|socket hang up|premature close|ECONNRESET/i.test(e.message ?? '');
}

/**
 * Maps an SDK (or network) failure to the project's codes. `where` names the object, never a secret.
 */
export function mapS3Error(err: unknown, action: string, where: string, endpoint?: string): MkpiError {
  if (err instanceof MkpiError) return err;
  const e = asS3Error(err);
  const name = errorName(err);
  const status = e.$metadata?.httpStatusCode;
  const details: Record<string, unknown> = { s3Error: name };
  if (status !== undefined) details['httpStatus'] = status;
  if (e.$metadata?.requestId) details['requestId'] = e.$metadata.requestId;
  const message = `${action} ${where}: ${name}${e.message && e.message !== name ? `: ${e.message}` : ''}`;
  const make = (code: ErrorCode, hint?: string): MkpiError =>
    new MkpiError(code, redact(message), { cause: err, details, ...(hint ? { hint } : {}) });

  if (name === 'AbortError') return make('MKPI_INTERRUPTED');
  if (NO_INPUT_NAMES.has(name) || status === 404) {
    return make('MKPI_NO_INPUT', name === 'NoSuchBucket' ? 'Check the bucket name of the lake URI (s3://bucket/prefix).' : undefined);
  }
  if (CONFIG_NAMES.has(name) || status === 401 || status === 403 || status === 301) {
    return make(
      'MKPI_CONFIG',
      name === 'PermanentRedirect' || name === 'AuthorizationHeaderMalformed' || status === 301
        ? 'The bucket lives in another region: set AWS_REGION (or the S3 region option) to its region.'
        : 'Check the AWS credentials of the default chain (AWS_PROFILE, AWS_ACCESS_KEY_ID...) and their permissions on this bucket.',
    );
  }
  if (/region is missing/i.test(e.message ?? '')) {
    return make('MKPI_CONFIG', 'Set AWS_REGION (or the S3 region option).');
  }
  if (isTransientS3Error(err)) {
    return make(
      'MKPI_LAKE_UNAVAILABLE',
      endpoint ? `Is the S3 endpoint ${redact(endpoint)} reachable?` : 'S3 did not answer after retries; try again later.',
    );
  }
  if (status !== undefined && status >= 400) return make('MKPI_INTERNAL');
  return make('MKPI_LAKE_UNAVAILABLE');
}
