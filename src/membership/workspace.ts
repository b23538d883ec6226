import { randomUUID } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import type { JsonObject } from '../core/event-store.js';
import { IDEMPOTENCY_RETENTION_MS } from '../ledger/state.js';
import { DEFAULT_TIER_TABLE, type TierName, type TierTable } from '../ledger/tiers.js';
import { type KeysetCursor, type Page, pageOf } from './cursor.js';
import { checkCount, checkStorage, type PlanLimitReached, type PlanLimits } from './tier-gates.js';

/**
 * A user's flows (the seed's projects) and own components, with the plan limits of their tier:
 * `max_projects`, `max_components`, and `max_storage_mb` over the summed size of every stored
 * definition (flows and components). Limits are checked inside the writing transaction after locking
 * the owner's `users` row, so two concurrent creates at the limit cannot both pass. After a downgrade
 * nothing is taken away: existing items stay readable, updates that do not grow storage past the
 * limit still work, only creating more is refused.
 */

export interface Usage {
  readonly projects: number;
  readonly components: number;
  readonly storage_bytes: number;
}

export interface FlowRow {
  readonly id: string;
  readonly owner_id: string;
  readonly name: string;
  readonly definition: JsonObject;
  readonly size_bytes: number;
  readonly created_at: Date;
  readonly updated_at: Date;
}
export type FlowSummary = Omit<FlowRow, 'definition'>;

export type ComponentSource = 'user' | 'ai';
export interface ComponentRow extends FlowRow {
  readonly source: ComponentSource;
}

export type Written<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly limit: PlanLimitReached };

export interface Content {
  readonly name: string;
  readonly definition: JsonObject;
}

interface PageRequest {
  readonly limit: number;
  readonly cursor: KeysetCursor | null;
}

export interface Workspace {
  limitsOf(tier: TierName): PlanLimits;
  usage(ownerId: string): Promise<Usage>;
  listFlows(ownerId: string, page: PageRequest): Promise<Page<FlowSummary>>;
  getFlow(ownerId: string, id: string): Promise<FlowRow | null>;
  createFlow(ownerId: string, tier: TierName, content: Content, now: Date): Promise<Written<FlowRow>>;
  /** Null: the owner has no flow with this id. */
  updateFlow(ownerId: string, id: string, tier: TierName, content: Content, now: Date): Promise<Written<FlowRow> | null>;
  deleteFlow(ownerId: string, id: string): Promise<boolean>;
  listComponents(ownerId: string, page: PageRequest): Promise<Page<ComponentRow>>;
  getComponent(ownerId: string, id: string): Promise<ComponentRow | null>;
  /** The component stored earlier under this Idempotency-Key by an AI generation, if any. */
  findGeneratedComponent(ownerId: string, idempotencyKey: string): Promise<ComponentRow | null>;
  /** The component count limit, checked without writing (before a charged AI generation). */
  checkComponentLimit(ownerId: string, tier: TierName): Promise<PlanLimitReached | null>;
  createComponent(
    ownerId: string,
    tier: TierName,
    content: Content & {
      source: ComponentSource;
      idempotencyKey?: string | undefined;
      /**
       * The generation was charged afresh under `idempotencyKey` (not replayed): a component stored
       * under the key by its earlier, expired use gives the key up; one stored by a replay of this same
       * generation (which overtook it) is returned instead of storing another.
       */
      freshUseOfKey?: boolean | undefined;
    },
    now: Date,
  ): Promise<Written<ComponentRow>>;
  deleteComponent(ownerId: string, id: string): Promise<boolean>;
}

/**
 * How deep a definition may nest (objects and arrays). Far beyond any real flow, and well short of
 * where serialising it (JSON.stringify, Postgres' jsonb input) would run out of stack and fail a write
 * after validation.
 */
export const MAX_DEFINITION_DEPTH = 1000;

/** Storage counted for a definition: the UTF-8 size of its JSON text. */
export const definitionSize = (definition: JsonObject): number => Buffer.byteLength(JSON.stringify(definition));

const definitionSchema = z.record(z.string(), z.unknown()).transform((value) => value as JsonObject);

const flowRow = z.object({
  id: z.string(),
  owner_id: z.string(),
  name: z.string(),
  definition: definitionSchema,
  size_bytes: z.number().int(),
  created_at: z.date(),
  updated_at: z.date(),
});
const flowSummaryRow = flowRow.omit({ definition: true });
const componentRow = flowRow.extend({ source: z.enum(['user', 'ai']) });

const usageRow = z.object({ projects: z.number().int(), components: z.number().int(), storage_bytes: z.number() });

const flowColumns = sql.fragment`id, owner_id, name, definition, size_bytes, created_at, updated_at`;
const componentColumns = sql.fragment`id, owner_id, name, definition, size_bytes, source, created_at, updated_at`;

const keysetAfter = (cursor: KeysetCursor | null) =>
  cursor ? sql.fragment`and (created_at, id) < (${cursor.createdAt.toISOString()}::timestamptz, ${cursor.id}::uuid)` : sql.fragment``;

const usageOf = (db: CommonQueryMethods, ownerId: string): Promise<Usage> =>
  db.one(sql.type(usageRow)`
    select (select count(*) from flows where owner_id = ${ownerId})::int4 as projects,
           (select count(*) from components where owner_id = ${ownerId})::int4 as components,
           ((select coalesce(sum(size_bytes), 0) from flows where owner_id = ${ownerId})
            + (select coalesce(sum(size_bytes), 0) from components where owner_id = ${ownerId}))::float8 as storage_bytes`);

/** Serialises every plan-limited write of one owner (flows and components share the storage budget). */
const lockOwner = (db: CommonQueryMethods, ownerId: string) => db.query(sql.unsafe`select 1 from users where id = ${ownerId} for update`);

export function createWorkspace(pool: DatabasePool, options: { tiers?: TierTable } = {}): Workspace {
  const tiers = options.tiers ?? DEFAULT_TIER_TABLE;
  const limitsOf = (tier: TierName): PlanLimits => tiers[tier];

  return {
    limitsOf,
    usage: (ownerId) => usageOf(pool, ownerId),

    async listFlows(ownerId, { limit, cursor }) {
      const rows = await pool.any(sql.type(flowSummaryRow)`
        select id, owner_id, name, size_bytes, created_at, updated_at from flows
        where owner_id = ${ownerId} ${keysetAfter(cursor)}
        order by created_at desc, id desc
        limit ${limit + 1}`);
      return pageOf(rows, limit);
    },

    getFlow: (ownerId, id) =>
      pool.maybeOne(sql.type(flowRow)`select ${flowColumns} from flows where id = ${id} and owner_id = ${ownerId}`),

    createFlow: (ownerId, tier, { name, definition }, now) =>
      pool.transaction(async (tx): Promise<Written<FlowRow>> => {
        await lockOwner(tx, ownerId);
        const usage = await usageOf(tx, ownerId);
        const limits = limitsOf(tier);
        const size = definitionSize(definition);
        const refused = checkCount('projects', limits.max_projects, usage.projects) ?? checkStorage(limits.max_storage_mb, usage.storage_bytes, size);
        if (refused) return { ok: false, limit: refused };
        const at = now.toISOString();
        const value = await tx.one(sql.type(flowRow)`
          insert into flows (id, owner_id, name, definition, size_bytes, created_at, updated_at)
          values (${randomUUID()}, ${ownerId}, ${name}, ${sql.jsonb(definition)}, ${size}, ${at}, ${at})
          returning ${flowColumns}`);
        return { ok: true, value };
      }),

    updateFlow: (ownerId, id, tier, { name, definition }, now) =>
      pool.transaction(async (tx): Promise<Written<FlowRow> | null> => {
        await lockOwner(tx, ownerId);
        const current = await tx.maybeOne(sql.type(z.object({ size_bytes: z.number().int() }))`
          select size_bytes from flows where id = ${id} and owner_id = ${ownerId} for update`);
        if (!current) return null;
        const usage = await usageOf(tx, ownerId);
        const size = definitionSize(definition);
        const refused = checkStorage(limitsOf(tier).max_storage_mb, usage.storage_bytes, size - current.size_bytes);
        if (refused) return { ok: false, limit: refused };
        const value = await tx.one(sql.type(flowRow)`
          update flows set name = ${name}, definition = ${sql.jsonb(definition)}, size_bytes = ${size}, updated_at = ${now.toISOString()}
          where id = ${id} and owner_id = ${ownerId}
          returning ${flowColumns}`);
        return { ok: true, value };
      }),

    async deleteFlow(ownerId, id) {
      const result = await pool.query(sql.unsafe`delete from flows where id = ${id} and owner_id = ${ownerId}`);
      return result.rowCount > 0;
    },

    async listComponents(ownerId, { limit, cursor }) {
      const rows = await pool.any(sql.type(componentRow)`
        select ${componentColumns} from components
        where owner_id = ${ownerId} ${keysetAfter(cursor)}
        order by created_at desc, id desc
        limit ${limit + 1}`);
      return pageOf(rows, limit);
    },

    getComponent: (ownerId, id) =>
      pool.maybeOne(sql.type(componentRow)`select ${componentColumns} from components where id = ${id} and owner_id = ${ownerId}`),

    findGeneratedComponent: (ownerId, idempotencyKey) =>
      pool.maybeOne(sql.type(componentRow)`
        select ${componentColumns} from components where owner_id = ${ownerId} and idempotency_key = ${idempotencyKey}`),

    async checkComponentLimit(ownerId, tier) {
      const usage = await usageOf(pool, ownerId);
      return checkCount('components', limitsOf(tier).max_components, usage.components);
    },

    createComponent: (ownerId, tier, { name, definition, source, idempotencyKey, freshUseOfKey }, now) =>
      pool.transaction(async (tx): Promise<Written<ComponentRow>> => {
        await lockOwner(tx, ownerId);
        if (idempotencyKey !== undefined) {
          const existing = await tx.maybeOne(sql.type(componentRow)`
            select ${componentColumns} from components where owner_id = ${ownerId} and idempotency_key = ${idempotencyKey}`);
          // A fresh charge gives the key up only from a component of an earlier use (over 24 h ago, so
          // at least 23 h old: a generation settles within its reservation, at most 1 h). A younger one
          // was stored by a replay of this very generation that overtook it: that one is the answer.
          const earlierUse = freshUseOfKey === true && existing !== null && existing.created_at.getTime() < now.getTime() - IDEMPOTENCY_RETENTION_MS / 2;
          if (existing && !earlierUse) return { ok: true, value: existing };
          if (existing) await tx.query(sql.unsafe`update components set idempotency_key = null where id = ${existing.id}`);
        }
        const size = definitionSize(definition);
        // An AI component has been paid for by the time it is stored: its limits were checked before
        // the charge (checkComponentLimit), and it is stored even if a concurrent create took the slot.
        if (source === 'user') {
          const usage = await usageOf(tx, ownerId);
          const limits = limitsOf(tier);
          const refused =
            checkCount('components', limits.max_components, usage.components) ?? checkStorage(limits.max_storage_mb, usage.storage_bytes, size);
          if (refused) return { ok: false, limit: refused };
        }
        const at = now.toISOString();
        const value = await tx.one(sql.type(componentRow)`
          insert into components (id, owner_id, name, definition, size_bytes, source, idempotency_key, created_at, updated_at)
          values (${randomUUID()}, ${ownerId}, ${name}, ${sql.jsonb(definition)}, ${size}, ${source}, ${idempotencyKey ?? null}, ${at}, ${at})
          returning ${componentColumns}`);
        return { ok: true, value };
      }),

    async deleteComponent(ownerId, id) {
      const result = await pool.query(sql.unsafe`delete from components where id = ${id} and owner_id = ${ownerId}`);
      return result.rowCount > 0;
    },
  };
}
