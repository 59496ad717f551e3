import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { IdParams, Text, problemResponses } from '../../http/schemas.ts';
import { REVEAL_REASON_MAX, REVEAL_REASON_MIN, type RevealService } from './reveal.ts';

const RevealBody = Type.Object(
  {
    fields: Type.Array(Type.String({ maxLength: 64 }), { minItems: 1, maxItems: 32 }),
    reason: Text(REVEAL_REASON_MAX, {
      minLength: REVEAL_REASON_MIN,
      description: `Why the clear values are needed (${REVEAL_REASON_MIN}+ characters); audited`,
    }),
  },
  { additionalProperties: false },
);

const RevealResponse = Type.Object({
  id: Type.String({ format: 'uuid' }),
  values: Type.Record(Type.String(), Type.Union([Type.String(), Type.Null()]), {
    description: 'Field name -> clear value (null when empty)',
  }),
});

/** POST /api/v1/{path}/{id}/reveal. */
export function registerRevealRoute(
  app: FastifyInstance,
  o: { path: string; name: string; reveal: RevealService },
) {
  app.post(
    `/api/v1/${o.path}/:id/reveal`,
    {
      schema: {
        tags: [o.name],
        summary: 'Reveal the clear values of masked fields (audited, step-up)',
        description:
          'Needs the reveal permission for every field named (policy.reveal_forbidden otherwise), a reason, and a sign-in or step-up less than 5 minutes old (auth.step_up_required). Audited as record.revealed with the field names and the reason, never the values.',
        params: IdParams,
        body: RevealBody,
        response: { 200: RevealResponse, ...problemResponses },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const body = request.body as Static<typeof RevealBody>;
      return o.reveal(actorOf(request), id, body);
    },
  );
}
