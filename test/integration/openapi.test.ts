import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;

interface MediaType {
  schema?: Record<string, unknown>;
}
interface Response {
  description?: string;
  content?: Record<string, MediaType>;
}
interface Operation {
  responses?: Record<string, Response>;
  summary?: string;
  tags?: string[];
}
interface OpenApi {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
}
let doc: OpenApi;

beforeAll(async () => {
  ctx = await createTestContext();
  const res = await ctx.app.inject({ url: '/api/v1/openapi.json' });
  expect(res.statusCode).toBe(200);
  doc = res.json<OpenApi>();
});
afterAll(async () => ctx?.close());

/** Routes the app serves that are not API operations: the document itself and its UI. */
const NOT_OPERATIONS = (path: string) =>
  path === '/api/v1/openapi.json' || path === '/docs' || path.startsWith('/docs/');

/**
 * Every (method, path) the router knows, read from `printRoutes({ commonPrefix: false })`: one
 * line per node, four characters of indentation per level, methods in parentheses.
 */
function registeredRoutes(): Array<{ method: string; path: string }> {
  const tree = ctx.app.printRoutes({ commonPrefix: false });
  const stack: string[] = [];
  const routes: Array<{ method: string; path: string }> = [];
  for (const line of tree.split('\n')) {
    const m = /^(.*?)(?:├── |└── )(.+?)(?: \(([^)]*)\))?$/.exec(line);
    if (!m) continue;
    const depth = [...m[1]!].length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const path = stack.join('');
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim())) {
      if (method && method !== 'HEAD') routes.push({ method, path });
    }
  }
  return routes;
}
const toOpenApiPath = (path: string) => path.replace(/:(\w+)/g, '{$1}');

describe('OpenAPI document', () => {
  it('is OpenAPI 3.1.0 with a title, version and the Problem schema', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.title).toBe('Custos CRM API');
    expect(doc.components.schemas).toHaveProperty('Problem');
    for (const name of ['Contact', 'Company', 'Deal', 'Activity']) {
      expect(doc.components.schemas, name).toHaveProperty(name);
    }
  });

  it('reads the route tree completely (the check below would pass vacuously otherwise)', () => {
    const routes = registeredRoutes().map((r) => `${r.method} ${r.path}`);
    for (const expected of [
      'POST /api/v1/auth/login',
      'GET /api/v1/contacts',
      'PATCH /api/v1/contacts/:id',
      'DELETE /api/v1/activities/:id',
      'GET /healthz',
      'GET /api/v1/openapi.json',
    ]) {
      expect(routes).toContain(expected);
    }
    expect(routes.length).toBeGreaterThan(30);
  });

  it('documents every route the app serves, and nothing it does not', () => {
    const served = registeredRoutes()
      .filter((r) => !NOT_OPERATIONS(r.path))
      .map((r) => `${r.method} ${toOpenApiPath(r.path)}`)
      .sort();
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    expect(documented).toEqual(served);
  });

  it('documents a 2xx response schema and a problem+json response on every operation', () => {
    const problems: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method.toUpperCase()} ${path}`;
        const responses = Object.entries(op.responses ?? {});
        const ok = responses.filter(([status]) => /^2\d\d$/.test(status));
        if (ok.length === 0) problems.push(`${where}: no 2xx response`);
        for (const [status, r] of ok) {
          // 204 has no body; every other success describes its body (JSON, or CSV for exports).
          if (status === '204') {
            if (r.content !== undefined) problems.push(`${where}: 204 with a body`);
          } else if (!Object.values(r.content ?? {}).some((media) => media.schema)) {
            problems.push(`${where}: ${status} without a schema`);
          }
        }
        const errors = responses.filter(([status]) => /^[45]\d\d$/.test(status));
        if (errors.length === 0) problems.push(`${where}: no error response`);
        for (const [status, r] of errors) {
          // Errors are sent as application/problem+json: the document must say so.
          const schema = r.content?.['application/problem+json']?.schema;
          if (schema?.$ref !== '#/components/schemas/Problem') {
            problems.push(`${where}: ${status} is not documented as application/problem+json`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('describes the tenant phone region: read, changed, its format and what it does', () => {
    const settings = doc.paths['/api/v1/tenant/settings']!;
    const shown = settings.get!.responses!['200']!.content!['application/json']!.schema as {
      properties: Record<string, { anyOf?: { pattern?: string }[]; description?: string }>;
      required: string[];
    };
    expect(shown.required).toContain('phoneRegion');
    const region = shown.properties.phoneRegion!;
    expect(region.anyOf).toContainEqual(expect.objectContaining({ pattern: '^[A-Z]{2}$' }));
    expect(region.description).toMatch(/national phone numbers/);
    const patch = settings.patch as {
      requestBody: { content: Record<string, { schema: { properties: Record<string, unknown> } }> };
    };
    const body = patch.requestBody.content['application/json']!.schema;
    expect(body.properties.phoneRegion).toMatchObject({
      anyOf: [{ pattern: '^[A-Z]{2}$' }, { type: 'null' }],
    });
  });

  it('documents the record routes fully: list query, If-Match and the error statuses', () => {
    for (const resource of ['contacts', 'companies', 'deals', 'activities']) {
      const list = doc.paths[`/api/v1/${resource}`]!.get!;
      expect(Object.keys(list.responses!)).toEqual(
        expect.arrayContaining(['200', '400', '401', '403']),
      );
      const one = doc.paths[`/api/v1/${resource}/{id}`]!;
      expect(Object.keys(one.patch!.responses!)).toEqual(
        expect.arrayContaining(['200', '404', '412', '428']),
      );
      const params = (one.patch as { parameters?: Array<{ in: string; name: string }> }).parameters;
      expect(params).toContainEqual(expect.objectContaining({ in: 'header', name: 'if-match' }));
      expect(params).toContainEqual(expect.objectContaining({ in: 'path', name: 'id' }));
    }
  });

  it('is served without credentials and never cached by a shared cache', async () => {
    const res = await ctx.app.inject({ url: '/api/v1/openapi.json' });
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
  });
});

describe('/docs', () => {
  it('serves the interactive UI as HTML without credentials', async () => {
    let res = await ctx.app.inject({ url: '/docs' });
    for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && hops < 3; hops++) {
      res = await ctx.app.inject({ url: new URL(res.headers.location!, 'http://x').pathname });
    }
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(/swagger-ui/i);
    const init = await ctx.app.inject({ url: '/docs/static/swagger-initializer.js' });
    expect(init.statusCode).toBe(200);
    expect(init.body).toContain('/api/v1/openapi.json');
  });
});
