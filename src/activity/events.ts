/**
 * Activity events: the facts recorded on a user's activity stream (`activity-<userId>`), which the
 * activity projection (projections/activity.ts) turns into `activity_logs` rows next to a row for
 * every ledger event.
 *
 * - `UserSignedUp` / `UserSignedIn` (appended by the sign-in flow): `{ at, method, ip, user_agent, device_info }`.
 * - `LauncherLogsRecorded` (POST /logs/batch): `{ at, batch_id, ip, user_agent, entries: [...] }`, one
 *   event per accepted batch, one `activity_logs` row per entry.
 *
 * `data` is snake_case JSON; `at` is the server's time (ISO 8601 UTC). The reader is tolerant: a
 * missing optional field reads as null, unknown fields are ignored.
 */
import { z } from 'zod';
import type { JsonObject, JsonValue, NewEvent } from '../core/event-store.js';

export const ACTIVITY_STREAM_PREFIX = 'activity-';

export const activityStreamId = (userId: string): string => `${ACTIVITY_STREAM_PREFIX}${userId}`;

/** The user id of an activity stream, or null when the stream is not one. */
export const userIdOfActivityStream = (streamId: string): string | null =>
  streamId.startsWith(ACTIVITY_STREAM_PREFIX) && streamId.length > ACTIVITY_STREAM_PREFIX.length
    ? streamId.slice(ACTIVITY_STREAM_PREFIX.length)
    : null;

export const USER_SIGNED_UP = 'UserSignedUp' as const;
export const USER_SIGNED_IN = 'UserSignedIn' as const;
export const LAUNCHER_LOGS_RECORDED = 'LauncherLogsRecorded' as const;
/** Appended by PUT /admin/users/:id/active: `{ at, actor_id, reason }`. */
export const USER_DEACTIVATED = 'UserDeactivated' as const;
export const USER_REACTIVATED = 'UserReactivated' as const;

export const ACTIVITY_EVENT_TYPES = [USER_SIGNED_UP, USER_SIGNED_IN, LAUNCHER_LOGS_RECORDED, USER_DEACTIVATED, USER_REACTIVATED] as const;
export type ActivityEventType = (typeof ACTIVITY_EVENT_TYPES)[number];

/** The `action` of the activity_logs rows of sign-ups and sign-ins. */
export const SIGN_UP_ACTION = 'signup';
export const SIGN_IN_ACTION = 'login';
export const DEACTIVATED_ACTION = 'account_deactivated';
export const REACTIVATED_ACTION = 'account_reactivated';

/** Limits of one launcher log batch (API §7). */
export const MAX_LOG_ENTRIES = 500;
export const MAX_LOG_BATCH_BYTES = 1024 * 1024;

const instant = z
  .string()
  .refine((text) => !Number.isNaN(Date.parse(text)), 'must be an ISO 8601 instant')
  .transform((text) => new Date(text).toISOString());

const jsonObject = z.record(z.string(), z.json()) as unknown as z.ZodType<JsonObject>;
const optionalText = z.string().nullish().transform((value) => value ?? null);

export const SignInData = z.object({
  /** Missing in a malformed event: the projection then uses the event's recorded time. */
  at: instant.optional(),
  method: optionalText,
  ip: optionalText,
  user_agent: optionalText,
  device_info: jsonObject.nullish().transform((value) => value ?? null),
});
export type SignInData = z.output<typeof SignInData>;

export const LogEntry = z.object({
  action: z.string(),
  resource_type: optionalText,
  resource_id: optionalText,
  metadata: jsonObject.nullish().transform((value) => value ?? null),
  client_ts: optionalText,
});
export type LogEntry = z.output<typeof LogEntry>;

export const LauncherLogsRecordedData = z.object({
  at: instant,
  batch_id: optionalText,
  ip: optionalText,
  user_agent: optionalText,
  entries: z.array(LogEntry),
});
export type LauncherLogsRecordedData = z.output<typeof LauncherLogsRecordedData>;

export const ActiveChangedData = z.object({
  at: instant.optional(),
  actor_id: optionalText,
  reason: optionalText,
});
export type ActiveChangedData = z.output<typeof ActiveChangedData>;

export type ActivityEvent =
  | { type: typeof USER_DEACTIVATED; data: ActiveChangedData }
  | { type: typeof USER_REACTIVATED; data: ActiveChangedData }
  | { type: typeof USER_SIGNED_UP; data: SignInData }
  | { type: typeof USER_SIGNED_IN; data: SignInData }
  | { type: typeof LAUNCHER_LOGS_RECORDED; data: LauncherLogsRecordedData };

export class InvalidActivityEventError extends Error {
  readonly code = 'invalid_activity_event' as const;
  constructor(
    readonly eventType: string,
    readonly issues: readonly { path: string; message: string }[],
  ) {
    super(`invalid ${eventType} data: ${issues.map((i) => `${i.path || '(root)'} ${i.message}`).join('; ')}`);
    this.name = 'InvalidActivityEventError';
  }
}

const parseWith = <T>(type: string, schema: z.ZodType<T>, data: unknown): T => {
  const result = schema.safeParse(data);
  if (!result.success) {
    throw new InvalidActivityEventError(
      type,
      result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    );
  }
  return result.data;
};

/** A typed activity event, or null for a type that is not one; throws InvalidActivityEventError on bad data. */
export const tryParseActivityEvent = (type: string, data: unknown): ActivityEvent | null => {
  switch (type) {
    case USER_SIGNED_UP:
    case USER_SIGNED_IN:
      return { type, data: parseWith(type, SignInData, data) };
    case LAUNCHER_LOGS_RECORDED:
      return { type, data: parseWith(type, LauncherLogsRecordedData, data) };
    case USER_DEACTIVATED:
    case USER_REACTIVATED:
      return { type, data: parseWith(type, ActiveChangedData, data) };
    default:
      return null;
  }
};

export interface SignInFacts {
  readonly at: Date;
  /** e.g. `google`. */
  readonly method: string;
  readonly ip: string | null;
  readonly user_agent: string | null;
  readonly device_info: JsonObject | null;
}

const signInEvent = (type: typeof USER_SIGNED_UP | typeof USER_SIGNED_IN, id: string, facts: SignInFacts): NewEvent => ({
  id,
  type,
  data: {
    at: facts.at.toISOString(),
    method: facts.method,
    ip: facts.ip,
    user_agent: facts.user_agent,
    device_info: facts.device_info as JsonValue,
  },
});

/** The `UserSignedUp` event for a new user's first sign-in. */
export const userSignedUp = (id: string, facts: SignInFacts): NewEvent => signInEvent(USER_SIGNED_UP, id, facts);

/** The `UserSignedIn` event for every sign-in (a new user gets both, sign-up first). */
export const userSignedIn = (id: string, facts: SignInFacts): NewEvent => signInEvent(USER_SIGNED_IN, id, facts);
