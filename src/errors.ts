/**
 * The one error type of Custos. `kind` decides the transport status (only `http/` knows the
 * mapping); `code` is the stable, documented identifier clients switch on; `message` is for the
 * log only and never reaches a client. `detail` is safe to show.
 */
export type ErrorKind =
  | 'invalid'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'precondition_required'
  | 'too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'unavailable'
  | 'internal';

export type ErrorCode =
  // request shape
  | 'request.malformed_json'
  | 'request.invalid'
  | 'request.too_large'
  | 'request.unsupported_media_type'
  | 'request.route_not_found'
  | 'request.invalid_cursor'
  // authentication
  | 'auth.unauthenticated'
  | 'auth.invalid_credentials'
  | 'auth.session_expired'
  | 'auth.api_key_invalid'
  | 'auth.csrf_failed'
  | 'auth.password_rejected'
  | 'auth.mfa_invalid_code'
  | 'auth.mfa_challenge_invalid'
  | 'auth.mfa_already_enabled'
  | 'auth.mfa_not_enrolled'
  | 'auth.step_up_required'
  | 'auth.step_up_failed'
  | 'auth.step_up_code_required'
  | 'auth.reset_token_invalid'
  | 'auth.reset_token_used'
  | 'auth.reset_token_expired'
  | 'auth.reset_mfa_required'
  | 'auth.reset_rate_limited'
  | 'auth.email_token_invalid'
  | 'auth.email_token_used'
  | 'auth.email_token_expired'
  | 'auth.current_password_invalid'
  | 'auth.passkey_invalid'
  | 'auth.passkey_not_registered'
  | 'auth.passkey_exists'
  | 'auth.mfa_enrolment_required'
  // authorization
  | 'policy.forbidden'
  | 'policy.field_not_writable'
  | 'role.exceeds_own'
  | 'role.name_taken'
  | 'role.in_use'
  | 'team.name_taken'
  // masking, reveal and break-glass (see src/modules/records/shape.ts, reveal.ts, break-glass)
  | 'policy.field_forbidden'
  | 'policy.reveal_forbidden'
  | 'break_glass.already_open'
  | 'break_glass.not_open'
  // records
  | 'resource.not_found'
  | 'resource.version_mismatch'
  | 'resource.if_match_required'
  | 'resource.conflict'
  | 'resource.invalid_reference'
  // encrypted fields (see src/modules/records/field-crypto.ts)
  | 'resource.integrity_failed'
  | 'resource.value_malformed'
  | 'resource.key_unknown'
  // users, tenants and keys
  | 'user.email_taken'
  | 'user.role_not_allowed'
  | 'user.cannot_change_self'
  | 'tenant.slug_taken'
  | 'api_key.role_not_allowed'
  | 'contact.email_taken'
  // import and export
  | 'import.invalid_header'
  | 'import.rejected'
  | 'import.invalid_mapping'
  | 'import.unsupported_encoding'
  | 'export.recipient_key_invalid'
  | 'export.recipient_key_too_weak'
  // field-encryption keys (see src/modules/keys)
  | 'keys.not_found'
  | 'keys.key_destroyed'
  | 'keys.version_retired'
  | 'keys.version_in_use'
  | 'keys.root_key_missing'
  | 'keys.root_key_insecure'
  | 'keys.root_key_invalid'
  | 'keys.root_key_mismatch'
  | 'keys.provider_unavailable'
  // audit log (see src/modules/audit)
  | 'audit.signing_key_insecure'
  | 'audit.signing_key_invalid'
  | 'audit.tree_range_invalid'
  // detection and response (see src/modules/detection)
  | 'alert.invalid_transition'
  | 'export.blocked'
  // reports
  | 'report.invalid_range'
  | 'audit.legal_hold_active'
  | 'audit.legal_hold_inactive'
  | 'audit.prune_refused'
  // server
  | 'server.unavailable'
  | 'server.internal';

export interface AppErrorOptions {
  /** Safe for clients: no values of personal fields, no SQL, no internal names. */
  detail?: string;
  /** Field-level validation problems, by JSON pointer of the field. */
  errors?: ReadonlyArray<{ field: string; reason: string }>;
  cause?: unknown;
}

export class AppError extends Error {
  override readonly name = 'AppError';
  readonly detail: string | undefined;
  readonly errors: ReadonlyArray<{ field: string; reason: string }> | undefined;

  constructor(
    readonly kind: ErrorKind,
    readonly code: ErrorCode,
    message: string,
    options: AppErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.detail = options.detail;
    this.errors = options.errors;
  }
}

export const notFound = (what: string): AppError =>
  new AppError('not_found', 'resource.not_found', `${what} not found`, {
    detail: `The ${what} does not exist.`,
  });

export function assertUnreachable(value: never): never {
  throw new TypeError(`Unreachable value: ${String(value)}`);
}
