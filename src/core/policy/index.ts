export * from './actor.ts';
export * from './roles.ts';
export * from './policy.ts';
export * from './fresh-auth.ts';
export * from './mfa-requirement.ts';
export * from './fields.ts';
export { fieldsOf, fieldGrant } from './ability.ts';
export * from './break-glass.ts';
