import { z } from 'zod';
import { parsePosition } from '../core/event-store.js';

/**
 * The input policy, decided once (API §1): bodies and query strings are strict objects (unknown
 * properties are a 400), nothing is coerced (`"10"` is not a number, `true` is not 1), integers are
 * safe integers. Query parameters arrive as text and are parsed explicitly. `assertStrictRouteSchema`
 * (run for every route at registration) refuses a route whose schema breaks the policy.
 */

export const MAX_CREDITS = 1_000_000_000;

/** A positive credit amount: an integer from 1 to 1,000,000,000. */
export const credits = z.int().min(1).max(MAX_CREDITS);

export const isoDate = z.string().describe('ISO 8601 UTC timestamp');
export const iso = (date: Date): string => date.toISOString();
export const isoOrNull = (date: Date | null | undefined): string | null => (date ? date.toISOString() : null);

export const uuid = z.uuid();

/** A query-string integer: digits only, then range-checked. */
export const queryInt = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,10}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.int().min(min).max(max));

export const limitParam = queryInt(1, 200).optional().default(50);
export const cursorParam = z.string().min(1).max(512).optional();

/** `?min_position=` (API §1): an opaque position string returned by a command. */
export const minPositionParam = z
  .string()
  .refine((text) => parsePosition(text) !== null, 'must be a position returned by the API')
  .optional();

export const problemSchema = z.looseObject({
  type: z.string(),
  title: z.string(),
  status: z.int(),
  detail: z.string(),
  code: z.string(),
  error: z.string(),
});

/** OpenAPI entries for the problem responses a route may give. */
export const errorResponses = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, problemSchema])) as Record<number, typeof problemSchema>;

export const bearerSecurity = [{ bearerAuth: [] }];

type ZodLike = { _zod?: { def?: { type?: string; catchall?: { _zod?: { def?: { type?: string } } } } } };

const isStrictObject = (schema: unknown): boolean => {
  const def = (schema as ZodLike)?._zod?.def;
  return def?.type === 'object' && def.catchall?._zod?.def?.type === 'never';
};

export function assertStrictRouteSchema(route: {
  method: string | string[];
  url: string;
  schema?: { body?: unknown; querystring?: unknown; params?: unknown };
  config?: unknown;
}): void {
  const looseBody = (route.config as { looseBody?: boolean } | undefined)?.looseBody === true;
  for (const part of ['body', 'querystring', 'params'] as const) {
    const schema = route.schema?.[part];
    if (schema === undefined || (part === 'body' && looseBody)) continue;
    if (!isStrictObject(schema)) {
      throw new Error(`${String(route.method)} ${route.url}: the ${part} schema must be z.strictObject (API §1 strict input)`);
    }
  }
}
