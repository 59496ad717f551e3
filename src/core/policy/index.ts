export * from './actor.ts';
export * from './policy.ts';
export * from './fresh-auth.ts';
export * from './mfa-requirement.ts';
export * from './fields.ts';
export * from './break-glass.ts';
