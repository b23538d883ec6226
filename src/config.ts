import { isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_MODEL_PRICES } from './ledger/tiers.js';
import { emailKey } from './membership/emails.js';

/**
 * The only reader of the environment. Everything else receives a typed Config.
 * Bad configuration fails at boot with one clear line (ConfigError.message).
 */

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const csv = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? '')
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part.length > 0),
  );

const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value.trim()));

const optionalUrl = (protocols: readonly string[]) =>
  optionalText.refine(
    (value) => {
      if (value === undefined) return true;
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL (${protocols.join(' or ')})` },
  );

const secret = optionalText.refine((value) => value === undefined || Buffer.byteLength(value) >= 32, {
  message: 'must be at least 32 bytes (256 bits) for HS256',
});

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: z
    .string()
    .regex(/^\d{1,5}$/, 'must be a port number')
    .default('3000')
    .transform(Number)
    .refine((port) => port >= 0 && port <= 65535, 'must be between 0 and 65535'),
  HOST: optionalText,
  DATABASE_URL: optionalUrl(['postgres:', 'postgresql:']),
  DATA_DIR: optionalText,
  EVENTSTORE_URL: optionalUrl(['esdb:', 'esdb+discover:', 'kurrentdb:', 'kurrentdb+discover:']),
  JWT_ACCESS_SECRET: secret,
  JWT_REFRESH_SECRET: secret,
  /** Verify-only access-token secrets during rotation (comma-separated, each ≥ 32 bytes). */
  JWT_ACCESS_SECRET_PREVIOUS: csv.refine((secrets) => secrets.every((value) => Buffer.byteLength(value) >= 32), {
    message: 'must be comma-separated secrets of at least 32 bytes each',
  }),
  AUTH_RATE_LIMIT_PER_MINUTE: z
    .string()
    .regex(/^\d{1,6}$/, 'must be a whole number')
    .default('20')
    .transform(Number)
    .refine((n) => n >= 1, 'must be at least 1'),
  GOOGLE_CLIENT_ID: csv,
  GOOGLE_CERTS_URL: optionalUrl(['http:', 'https:']),
  ADMIN_EMAILS: csv.transform((emails) => emails.map(emailKey)),
  CORS_ORIGINS: csv,
  STRIPE_SECRET_KEY: optionalText,
  STRIPE_WEBHOOK_SECRET: optionalText,
  /** Where the Stripe API is (default Stripe's own; tests point it at a local fake). */
  STRIPE_API_URL: optionalUrl(['http:', 'https:']),
  /** Where Stripe Checkout sends the buyer back. */
  STRIPE_SUCCESS_URL: optionalUrl(['http:', 'https:']),
  STRIPE_CANCEL_URL: optionalUrl(['http:', 'https:']),
  AI_PROVIDER: z.enum(['echo', 'openai']).optional(),
  AI_BASE_URL: optionalUrl(['http:', 'https:']),
  AI_API_KEY: optionalText,
  AI_TIMEOUT_MS: z
    .string()
    .regex(/^\d{1,7}$/, 'must be a whole number of milliseconds')
    .default('30000')
    .transform(Number)
    .refine((ms) => ms >= 100, 'must be at least 100'),
  MODEL_PRICES: optionalText,
  LOG_LEVEL: z.enum(LOG_LEVELS).optional(),
  TRUST_PROXY: optionalText,
});

const modelPricesSchema = z.record(
  z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
  z.number().int().positive().max(1_000_000),
);

export type ModelPrices = Readonly<Record<string, number>>;

export interface Config {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly port: number;
  readonly host: string;
  /** Unset: embedded Postgres under `dataDir`. */
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  /** Unset: the Postgres event store. */
  readonly eventStoreUrl: string | undefined;
  /** Unset outside production: generated and kept under `dataDir`. */
  readonly jwtAccessSecret: string | undefined;
  readonly jwtRefreshSecret: string | undefined;
  /** Previous access-token secrets, accepted for verification only while tokens signed with them live. */
  readonly jwtAccessSecretsPrevious: readonly string[];
  /** Requests per minute per IP across all /auth routes. */
  readonly authRateLimitPerMinute: number;
  readonly googleClientIds: readonly string[];
  readonly googleCertsUrl: string | undefined;
  readonly adminEmails: readonly string[];
  readonly corsOrigins: readonly string[];
  readonly stripeSecretKey: string | undefined;
  readonly stripeWebhookSecret: string | undefined;
  readonly stripe: {
    readonly apiUrl: string | undefined;
    readonly successUrl: string;
    readonly cancelUrl: string;
  };
  readonly ai: {
    readonly provider: 'echo' | 'openai';
    readonly baseUrl: string | undefined;
    readonly apiKey: string | undefined;
    readonly timeoutMs: number;
  };
  readonly modelPrices: ModelPrices;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /** false, true, a hop count, or a list of addresses/CIDRs, as Fastify's trustProxy. */
  readonly trustProxy: boolean | number | string[];
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** proxy-addr's names for ranges (Fastify's trustProxy takes them too). */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address or CIDR range Fastify's trustProxy accepts (it would otherwise throw while the app is built). */
const isProxyAddress = (part: string): boolean => {
  if (PROXY_RANGE_NAMES.has(part)) return true;
  const [address, prefix, ...rest] = part.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
};

const parseTrustProxy = (value: string | undefined): Config['trustProxy'] => {
  if (value === undefined || value === 'false') return false;
  if (value === 'true') return true;
  if (/^\d{1,2}$/.test(value)) return Number(value);
  const parts = value.split(',').map((part) => part.trim());
  const bad = parts.find((part) => !isProxyAddress(part));
  if (bad !== undefined) {
    throw new ConfigError(`invalid configuration: TRUST_PROXY must be true, false, a hop count or addresses/CIDR ranges of proxies (got ${JSON.stringify(bad)})`);
  }
  return parts;
};

/** Defaults a caller may choose when the environment is silent (e.g. the CLI logs only warnings). */
export interface ConfigDefaults {
  readonly logLevel?: Config['logLevel'];
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, defaults: ConfigDefaults = {}): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = issue?.path.join('.') ?? 'environment';
    throw new ConfigError(`invalid configuration: ${variable} ${issue?.message ?? 'is invalid'}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';

  if (production && (!e.JWT_ACCESS_SECRET || !e.JWT_REFRESH_SECRET)) {
    throw new ConfigError('invalid configuration: JWT_ACCESS_SECRET and JWT_REFRESH_SECRET are required in production');
  }
  if (e.JWT_ACCESS_SECRET && e.JWT_ACCESS_SECRET === e.JWT_REFRESH_SECRET) {
    throw new ConfigError('invalid configuration: JWT_ACCESS_SECRET and JWT_REFRESH_SECRET must differ');
  }
  if (production && !e.AI_PROVIDER) {
    throw new ConfigError('invalid configuration: AI_PROVIDER is required in production (echo or openai)');
  }
  const provider = e.AI_PROVIDER ?? 'echo';
  if (provider === 'openai' && !e.AI_BASE_URL) {
    throw new ConfigError('invalid configuration: AI_BASE_URL is required when AI_PROVIDER=openai');
  }
  if (e.STRIPE_SECRET_KEY && !e.STRIPE_WEBHOOK_SECRET) {
    throw new ConfigError('invalid configuration: STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set');
  }

  let modelPrices: ModelPrices = DEFAULT_MODEL_PRICES;
  if (e.MODEL_PRICES) {
    let json: unknown;
    try {
      json = JSON.parse(e.MODEL_PRICES);
    } catch {
      throw new ConfigError('invalid configuration: MODEL_PRICES must be a JSON object of model → credits');
    }
    const prices = modelPricesSchema.safeParse(json);
    if (!prices.success || Object.keys(prices.data).length === 0) {
      throw new ConfigError('invalid configuration: MODEL_PRICES must map model names to positive integer credits');
    }
    modelPrices = prices.data;
  }

  return {
    nodeEnv: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST ?? (production ? '0.0.0.0' : '127.0.0.1'),
    databaseUrl: e.DATABASE_URL,
    dataDir: e.DATA_DIR ?? '.data',
    eventStoreUrl: e.EVENTSTORE_URL,
    jwtAccessSecret: e.JWT_ACCESS_SECRET,
    jwtRefreshSecret: e.JWT_REFRESH_SECRET,
    jwtAccessSecretsPrevious: e.JWT_ACCESS_SECRET_PREVIOUS,
    authRateLimitPerMinute: e.AUTH_RATE_LIMIT_PER_MINUTE,
    googleClientIds: e.GOOGLE_CLIENT_ID,
    googleCertsUrl: e.GOOGLE_CERTS_URL,
    adminEmails: e.ADMIN_EMAILS,
    corsOrigins: e.CORS_ORIGINS,
    stripeSecretKey: e.STRIPE_SECRET_KEY,
    stripeWebhookSecret: e.STRIPE_WEBHOOK_SECRET,
    stripe: {
      apiUrl: e.STRIPE_API_URL,
      successUrl: e.STRIPE_SUCCESS_URL ?? `http://localhost:${e.PORT}/?purchase=success`,
      cancelUrl: e.STRIPE_CANCEL_URL ?? `http://localhost:${e.PORT}/?purchase=cancelled`,
    },
    ai: { provider, baseUrl: e.AI_BASE_URL, apiKey: e.AI_API_KEY, timeoutMs: e.AI_TIMEOUT_MS },
    modelPrices,
    logLevel: e.LOG_LEVEL ?? defaults.logLevel ?? (e.NODE_ENV === 'test' ? 'silent' : 'info'),
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
  };
}
