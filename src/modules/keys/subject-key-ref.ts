/**
 * How a subject key is named in a sealed value's envelope. Apart from subject-keys.ts (which
 * re-exports it) so that code without the key store, such as an import's crypto thread, can
 * seal under subject keys.
 */

/** Subject keys are not versioned: the envelope carries this constant. */
export const SUBJECT_KEY_VERSION = 1;

export const subjectKeyId = (subjectId: string): string => `subject:${subjectId}`;
