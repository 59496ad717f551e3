import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Whose rows the code running now may touch, carried through async calls so that service and
 * repository code never passes it along. On PostgreSQL the database wrapper (database.ts) hands
 * it to the row-level security policies of migration 0016 on every connection it gives Kysely;
 * on SQLite it changes nothing.
 *
 * - `tenant`: the rows of one tenant only (an authenticated request, a per-tenant job).
 * - `system`: every tenant's rows. Only the server's own code enters it, for what must happen
 *   before a tenant is known or across tenants: the routes that sign someone in (the tenant is
 *   what they establish), the session and API-key lookup that identifies a request, background
 *   workers that walk every tenant, and the operator's CLI. See README "Tenant walls".
 * - `migration`: the schema owner's own role, for migrations only.
 *
 * Code that runs with no scope at all gets no tenant's rows on PostgreSQL.
 */
export type TenantScope =
  | { readonly kind: 'tenant'; readonly tenantId: string }
  | { readonly kind: 'system'; readonly reason: SystemReason }
  | { readonly kind: 'migration' };

/** Why code crosses the walls: kept in the scope so a debugger or a log can say which door. */
export type SystemReason = 'pre-auth' | 'worker' | 'cli' | 'startup';

/** A holder whose scope may be narrowed later (a request learns its tenant in the auth hook). */
export interface ScopeHolder {
  scope: TenantScope;
}

const storage = new AsyncLocalStorage<ScopeHolder>();

/** The scope of the code running now, or undefined outside any. */
export function currentScope(): TenantScope | undefined {
  return storage.getStore()?.scope;
}

/** Runs `fn` with the rows of `tenantId` only. */
export function runInTenant<T>(tenantId: string, fn: () => T): T {
  if (tenantId.length === 0) throw new TypeError('tenant scope needs a tenant id');
  return storage.run({ scope: { kind: 'tenant', tenantId } }, fn);
}

/** Runs `fn` across tenants; see `TenantScope` for who may. */
export function runAsSystem<T>(reason: SystemReason, fn: () => T): T {
  return storage.run({ scope: { kind: 'system', reason } }, fn);
}

/** Runs `fn` as the schema owner (migrations). */
export function runAsMigration<T>(fn: () => T): T {
  return storage.run({ scope: { kind: 'migration' } }, fn);
}

/** Runs `fn` with a holder the caller may narrow later (HTTP requests). */
export function runWithHolder<T>(holder: ScopeHolder, fn: () => T): T {
  return storage.run(holder, fn);
}

/**
 * `service` (an object of methods, or a function) whose calls made with no scope run in the
 * system scope (a scope already entered is kept). For services that work across tenants by
 * nature: background workers and their jobs, wired in compose.ts.
 */
export function acrossTenants<T extends object>(reason: SystemReason, service: T): T {
  const call = (fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[]) =>
    currentScope() === undefined
      ? runAsSystem(reason, () => fn.apply(self, args))
      : fn.apply(self, args);
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(service, {
    apply(target, self, args: unknown[]) {
      return call(target as (...a: unknown[]) => unknown, self, args);
    },
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      let wrapper = wrapped.get(property);
      if (!wrapper) {
        const fn = value as (...args: unknown[]) => unknown;
        wrapper = (...args: unknown[]) => call(fn, target, args);
        wrapped.set(property, wrapper);
      }
      return wrapper;
    },
  });
}
