/**
 * An in-process test double of EventStoreDB's gRPC API, served with @grpc/grpc-js on 127.0.0.1
 * (insecure, ephemeral port) from the client package's own generated protocol definitions.
 *
 * Implemented: ServerFeatures/GetSupportedMethods (or UNIMPLEMENTED, see `appendPath`), Streams/Append,
 * Streams/BatchAppend, Streams/Read for stream reads, `$all` reads and `$all` subscriptions (with or
 * without a server-side filter). Not implemented: Delete, Tombstone, stream subscriptions, stream
 * metadata/ACLs, links, persistent subscriptions, projections, gossip, users, authentication.
 * It is a tool for wire-level tests of the adapter; it cannot catch drift of the real server.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { EXPECTED_ANY, TransactionLog } from './log.js';
import { serverFeaturesGrpc, serverFeaturesPb, streamsGrpc } from './protocol.js';
import { createStreamsService, DEFAULT_MAX_APPEND_SIZE, type LiveSubscription } from './streams-service.js';

export { TransactionLog } from './log.js';

export interface EsdbDoubleOptions {
  /**
   * `batch` (default): GetSupportedMethods lists Streams/BatchAppend, as servers since 21.10 do, so the
   * client appends with BatchAppend. `legacy`: ServerFeatures answers UNIMPLEMENTED, as a 20.x server,
   * so the client falls back to Streams/Append.
   */
  readonly appendPath?: 'batch' | 'legacy';
  /** Bytes one append may carry (server option MaxAppendSize). */
  readonly maxAppendSize?: number;
  /** Write a few system events first, as `$all` of a fresh server starts with some. Default true. */
  readonly seedSystemEvents?: boolean;
  /** Clock for `created`, in .NET ticks (100 ns) since the Unix epoch. */
  readonly nowTicks?: () => bigint;
  /** What GetSupportedMethods reports. */
  readonly serverVersion?: string;
  /**
   * Bytes of the server's cache of recently committed event ids, which alone makes `any` and
   * `stream_exists` re-appends idempotent. Default: the server's 8 MiB.
   */
  readonly committedEventsCacheBytes?: number;
}

export interface EsdbDouble {
  /** e.g. `esdb://127.0.0.1:PORT?tls=false` */
  readonly connectionString: string;
  /** The double's log, for assertions that must not go through the client. */
  readonly log: TransactionLog;
  /** Appends an event of a `$`-type to a `$`-stream, as the server's own subsystems do. */
  writeSystemEvent(type?: string, streamId?: string): void;
  /** RPCs received so far, by method: shows which append path the client took. */
  readonly calls: Readonly<Record<CountedMethod, number>>;
  /** Subscriptions currently open. */
  readonly openSubscriptions: () => number;
  /** Ends every open subscription with an error status, as a server dropping them would. */
  dropSubscriptions(status?: { code: grpc.status; details: string }): void;
  /** Drops subscriptions and shuts the server down, closing every connection. */
  stop(): Promise<void>;
}

export type CountedMethod = 'getSupportedMethods' | 'append' | 'batchAppend' | 'read';

const STREAM_METHODS = ['read', 'append', 'delete', 'tombstone', 'batchappend'] as const;

const supportedMethods = (serverVersion: string) => {
  const methods = STREAM_METHODS.map((name) => {
    const method = new serverFeaturesPb.SupportedMethod()
      .setServiceName('event_store.client.streams.streams')
      .setMethodName(name);
    if (name === 'read') method.setFeaturesList(['position', 'events']);
    if (name === 'batchappend') method.setFeaturesList(['deadline_duration']);
    return method;
  });
  const serverFeatures = new serverFeaturesPb.SupportedMethod()
    .setServiceName('event_store.client.server_features.serverfeatures')
    .setMethodName('getsupportedmethods');
  return new serverFeaturesPb.SupportedMethods()
    .setEventStoreServerVersion(serverVersion)
    .setMethodsList([...methods, serverFeatures]);
};

export async function startEsdbDouble(options: EsdbDoubleOptions = {}): Promise<EsdbDouble> {
  const log = new TransactionLog(options.nowTicks, options.committedEventsCacheBytes);
  const subscriptions = new Set<LiveSubscription>();
  const writeSystemEvent = (type = '$statsCollected', streamId = '$stats-127.0.0.1:2113') => {
    const data = Buffer.from(JSON.stringify({ at: new Date().toISOString() }), 'utf8');
    log.append(streamId, EXPECTED_ANY, [{ id: randomUUID(), type, isJson: true, data, metadata: new Uint8Array() }]);
  };
  if (options.seedSystemEvents ?? true) {
    writeSystemEvent('$epoch-information', '$epochs');
    writeSystemEvent('$ProjectionsInitialized', '$projections-$all');
  }

  const calls: Record<CountedMethod, number> = { getSupportedMethods: 0, append: 0, batchAppend: 0, read: 0 };
  const streams = createStreamsService({
    log,
    subscriptions,
    maxAppendSize: options.maxAppendSize ?? DEFAULT_MAX_APPEND_SIZE,
  });
  const server = new grpc.Server();
  server.addService(streamsGrpc.StreamsService, {
    ...streams,
    read: (call: Parameters<typeof streams.read>[0]) => {
      calls.read += 1;
      streams.read(call);
    },
    append: (call: Parameters<typeof streams.append>[0], callback: Parameters<typeof streams.append>[1]) => {
      calls.append += 1;
      streams.append(call, callback);
    },
    batchAppend: (call: Parameters<typeof streams.batchAppend>[0]) => {
      calls.batchAppend += 1;
      streams.batchAppend(call);
    },
  });
  if ((options.appendPath ?? 'batch') === 'batch') {
    const answer = supportedMethods(options.serverVersion ?? '24.10.0');
    server.addService(serverFeaturesGrpc.ServerFeaturesService, {
      getSupportedMethods: (_call: unknown, callback: grpc.sendUnaryData<typeof answer>) => {
        calls.getSupportedMethods += 1;
        callback(null, answer);
      },
    });
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    );
  });

  const dropSubscriptions = (status = { code: grpc.status.UNAVAILABLE, details: 'Subscription dropped' }) => {
    for (const subscription of [...subscriptions]) subscription.drop(status);
  };
  let stopped: Promise<void> | undefined;
  return {
    connectionString: `esdb://127.0.0.1:${port}?tls=false`,
    log,
    calls,
    openSubscriptions: () => subscriptions.size,
    writeSystemEvent,
    dropSubscriptions,
    stop: () => {
      stopped ??= new Promise<void>((resolve) => {
        dropSubscriptions({ code: grpc.status.UNAVAILABLE, details: 'Server is shutting down' });
        // Clients keep their HTTP/2 sessions open after dispose(); waiting for them would hang.
        server.forceShutdown();
        setImmediate(resolve);
      });
      return stopped;
    },
  };
}
