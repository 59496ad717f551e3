import { describe, expect, it } from 'vitest';
import { acrossTenants, currentScope, runAsSystem, runInTenant } from './tenant-scope.ts';

describe('tenant scope', () => {
  it('is absent outside any scope and follows awaits inside one', async () => {
    expect(currentScope()).toBeUndefined();
    const seen = await runInTenant('t1', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return currentScope();
    });
    expect(seen).toEqual({ kind: 'tenant', tenantId: 't1' });
    expect(currentScope()).toBeUndefined();
  });

  it('refuses an empty tenant id', () => {
    expect(() => runInTenant('', () => undefined)).toThrow(TypeError);
  });

  it('runs a cross-tenant service called outside any scope in the system scope', async () => {
    const worker = acrossTenants('worker', {
      runOnce: () => Promise.resolve(currentScope()),
    });
    const purge = acrossTenants('worker', () => currentScope());
    expect(await worker.runOnce()).toEqual({ kind: 'system', reason: 'worker' });
    expect(purge()).toEqual({ kind: 'system', reason: 'worker' });
  });

  it('keeps the scope a cross-tenant service is called in', async () => {
    const worker = acrossTenants('worker', { runOnce: () => currentScope() });
    expect(runInTenant('t2', () => worker.runOnce())).toEqual({ kind: 'tenant', tenantId: 't2' });
    expect(runAsSystem('cli', () => worker.runOnce())).toEqual({ kind: 'system', reason: 'cli' });
  });
});
