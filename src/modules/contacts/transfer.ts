import type { JsonWebKey } from 'node:crypto';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { authorize, requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import {
  encryptExport,
  importRsaPublicKey,
  isCryptoError,
  recipientThumbprint,
} from '../../core/crypto/index.ts';
import { AppError } from '../../errors.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { RecordService } from '../records/service.ts';
import { EXPORT_HEADER, EXPORT_MEDIA_TYPES, exportContacts, type ExportFormat } from './export.ts';
import type { KeyService } from '../keys/service.ts';
import { importContacts, type ImportOptions, type ImportReport } from './import.ts';

export type { ImportOptions, ImportReport } from './import.ts';
export type { ExportFormat } from './export.ts';

/** Media type of an encrypted export package (JWE compact serialisation, RFC 7516 section 9). */
export const JOSE_MEDIA_TYPE = 'application/jose';

export interface ExportOptions {
  format?: ExportFormat | undefined;
  /**
   * Seal the export to this RSA public key (PEM SPKI or PKCS#1, or a public JWK; at least 2048
   * bits) as a JWE, RSA-OAEP-256 + A256GCM. Without it the export is plain.
   */
  recipient?: string | JsonWebKey | undefined;
}

export type ExportResult =
  | { encrypted: false; mediaType: string; filename: string; body: Readable }
  | {
      encrypted: true;
      mediaType: typeof JOSE_MEDIA_TYPE;
      filename: string;
      /** The compact JWE: five base64url parts joined by dots. */
      body: string;
      /** RFC 7638 thumbprint of the recipient key (also the JWE `kid`). */
      recipientKid: string;
    };

/** A recipient key the export refuses, as a stable `export.*` code (400). */
function recipientKey(recipient: string | JsonWebKey) {
  try {
    return importRsaPublicKey(recipient);
  } catch (cause) {
    if (isCryptoError(cause, 'KEY_TOO_WEAK')) {
      throw new AppError('invalid', 'export.recipient_key_too_weak', 'RSA key too small', {
        detail: 'The recipient key must be an RSA key of at least 2048 bits (3072 recommended).',
        cause,
      });
    }
    if (isCryptoError(cause, 'KEY_INVALID')) {
      throw new AppError('invalid', 'export.recipient_key_invalid', 'not an RSA public key', {
        detail:
          'The recipient key must be an RSA public key: PEM (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY) or a JWK with kty "RSA", n and e, and no private members.',
        cause,
      });
    }
    throw cause;
  }
}

/**
 * CSV import and export of contacts. `contacts` is the record service whose rules the import
 * shares (its spec gives columns and lookup normalisation) and through which the export reads.
 */
export function createContactTransfer(deps: {
  db: Kysely<Database>;
  clock: Clock;
  contacts: RecordService;
  /** Records `contacts.exported` before the first byte leaves, and `contacts.imported`. */
  audit?: AuditRecorder | undefined;
  keys: KeyService;
  /** Refuses an export a detection response blocked (src/modules/detection). */
  exportGuard?: (actor: Actor) => Promise<void>;
}) {
  const { db, clock, contacts, keys } = deps;
  const fieldCrypto = contacts.crypto;
  return {
    /** See `importContacts`: streamed, validated, de-duplicated by e-mail. */
    import(actor: Actor, input: Readable, options?: ImportOptions): Promise<ImportReport> {
      return importContacts(
        { db, clock, keys, crypto: fieldCrypto, audit: deps.audit },
        actor,
        input,
        options,
      );
    },
    /** Throws while a detection response blocks the actor's exports; call before `export`. */
    async assertExportAllowed(actor: Actor): Promise<void> {
      await deps.exportGuard?.(actor);
    },
    /**
     * The tenant's contacts as CSV or JSON (see `exportContacts`), plain and streamed, or sealed
     * to a recipient's RSA key as one compact JWE (`application/jose`). Needs a fresh
     * authentication and the `export` permission; audited before any data leaves, in its own
     * transaction (no audit, no export).
     */
    async export(actor: Actor, options: ExportOptions = {}): Promise<ExportResult> {
      const format = options.format ?? 'csv';
      // The whole contact base in one file: a session must have proven its user recently.
      requireFreshAuth(actor, clock);
      authorize(actor, 'export', 'contact');
      const key = options.recipient === undefined ? undefined : recipientKey(options.recipient);
      const kid = key === undefined ? undefined : await recipientThumbprint(key);
      await db.transaction().execute(async (trx) => {
        await deps.audit?.append(trx, {
          tenantId: actor.tenantId,
          type: 'contacts.exported',
          ...auditActor(actor),
          target: kid === undefined ? null : { type: 'jwe_recipient', id: kid },
          reason: kid === undefined ? format : `${format}+jwe`,
          fields: [...EXPORT_HEADER],
        });
      });
      const stream = exportContacts({ db, contacts }, actor, format);
      const filename = `contacts.${format}`;
      if (key === undefined || kid === undefined) {
        return { encrypted: false, mediaType: EXPORT_MEDIA_TYPES[format], filename, body: stream };
      }
      // A JWE is sealed over the whole payload (the tag covers every byte), so the plaintext is
      // gathered in memory first; it never touches the disk.
      const plaintext = await buffer(stream);
      const jwe = await encryptExport(key, plaintext, {
        kid,
        contentType: EXPORT_MEDIA_TYPES[format],
      });
      plaintext.fill(0);
      return {
        encrypted: true,
        mediaType: JOSE_MEDIA_TYPE,
        filename: `${filename}.jwe`,
        body: jwe,
        recipientKid: kid,
      };
    },
  };
}

export type ContactTransfer = ReturnType<typeof createContactTransfer>;
