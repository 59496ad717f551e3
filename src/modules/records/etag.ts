import { AppError } from '../../errors.ts';

/** Strong entity tag of a record version. */
export function etagOf(version: number): string {
  return `"${version}"`;
}

/**
 * The version an If-Match header names. Updates must carry one, so that two people editing the
 * same record cannot silently overwrite each other: a missing header is 428, and `*` or a weak
 * tag (which never match strongly) are refused as well.
 */
export function versionFromIfMatch(
  header: string | undefined,
  required: boolean,
): number | undefined {
  if (header === undefined || header.trim() === '') {
    if (!required) return undefined;
    throw new AppError('precondition_required', 'resource.if_match_required', 'missing If-Match', {
      detail: 'Send If-Match with the ETag of the version you edited.',
    });
  }
  const match = /^\s*"(\d{1,15})"\s*$/.exec(header);
  if (!match?.[1]) {
    throw new AppError('precondition_failed', 'resource.version_mismatch', 'unusable If-Match', {
      detail: 'If-Match must be the strong ETag returned with the record, such as "3".',
    });
  }
  return Number(match[1]);
}
