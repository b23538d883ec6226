import { createHash } from 'node:crypto';
import {
  createPool,
  createTypeParserPreset,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
  SchemaValidationError,
  sql,
} from 'slonik';

export { sql };
export type { DatabasePool };

const preparedNames = new Map<string, string>();

/**
 * The query as a named prepared statement: Postgres parses, analyses and plans its text once per
 * connection instead of on every execution. For statements whose text is fixed (values are parameters)
 * and that run all the time — a spend's append and session check, a projector's batch — that work was
 * a large part of their cost in Postgres. The name is the text's digest: one name, one text. Only for
 * statements over objects that no DDL changes while the pool lives.
 */
export function prepared<Q extends { readonly sql: string }>(query: Q): Q & { readonly name: string } {
  let name = preparedNames.get(query.sql);
  if (name === undefined) {
    name = `q_${createHash('sha256').update(query.sql).digest('hex').slice(0, 32)}`;
    if (preparedNames.size >= 1000) preparedNames.clear();
    preparedNames.set(query.sql, name);
  }
  return { ...query, name };
}

/**
 * Validates every row of a typed query (`sql.type(zodSchema)`) against its schema.
 * Without it, slonik's types are a promise nobody checks.
 *
 * Synchronously (`transformRow`): slonik runs an async row hook through a promise queue per row, which
 * cost several µs per row on reads of thousands (a projector's catch-up, readAll). Every result schema
 * here validates synchronously; one that cannot (an async refinement) fails loudly rather than unchecked.
 */
export const resultParserInterceptor = (): Interceptor => ({
  name: 'result-parser',
  transformRow: (context, query, row) => {
    const parser = context.resultParser;
    if (!parser) return row;
    const result = parser['~standard'].validate(row);
    if (result instanceof Promise) throw new Error('result schemas must validate synchronously (no async refinements)');
    if (result.issues) throw new SchemaValidationError(query, row, result.issues);
    return result.value as QueryResultRow;
  },
});

export interface PoolOptions {
  readonly maxPoolSize?: number;
  readonly statementTimeoutMs?: number;
}

export async function createDatabasePool(url: string, options: PoolOptions = {}): Promise<DatabasePool> {
  const typeParsers = [
    ...createTypeParserPreset().filter((parser) => parser.name !== 'timestamptz'),
    // Dates as Date objects rather than epoch numbers.
    { name: 'timestamptz', parse: (value: string) => new Date(value) },
  ];
  return createPool(url, {
    interceptors: [resultParserInterceptor()],
    typeParsers,
    maxPoolSize: options.maxPoolSize ?? 20,
    statementTimeout: options.statementTimeoutMs ?? 30_000,
    idleInTransactionSessionTimeout: 60_000,
    // A serialization failure inside a ledger transaction must surface, not be silently replayed.
    transactionRetryLimit: 0,
    queryRetryLimit: 0,
    captureStackTrace: false,
    // slonik's default runs DISCARD ALL each time a connection goes back to the pool: one extra round
    // trip per query (about a third of a spend's cost in the benchmark). Nothing here leaves session
    // state on a pooled connection: session advisory locks and LISTEN use dedicated pg clients.
    resetConnection: async () => {},
  });
}
