/** Lower-cased, trimmed, NFC e-mail: the form used for uniqueness and exact lookups. */
export function normalizeEmail(email: string): string {
  return email.normalize('NFC').trim().toLowerCase();
}
