/**
 * `event_store.client.streams.Streams` over the in-memory log: Append, BatchAppend and Read (stream
 * reads, `$all` reads, `$all` subscriptions). Message shapes and error encodings follow the server's
 * gRPC layer (kurrent-io/KurrentDB `Services/Transport/Grpc/Streams.*.cs`, `Enumerators/*`).
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type {
  AppendReq,
  AppendResp,
  BatchAppendReq,
  BatchAppendResp,
  ReadReq,
  ReadResp,
} from '@eventstore/db-client/generated/streams_pb.js';
import type { IStreamsServer } from '@eventstore/db-client/generated/streams_grpc_pb.js';
import {
  BEFORE_FIRST,
  EXPECTED_ANY,
  EXPECTED_NO_STREAM,
  EXPECTED_STREAM_EXISTS,
  type EventPredicate,
  type LoggedEvent,
  type ProposedEvent,
  type TfPos,
  type TransactionLog,
} from './log.js';
import {
  anyPb,
  codePb,
  emptyPb,
  sharedPb,
  statusPb,
  streamIdentifier,
  streamNameOf,
  streamsPb,
  uuidFromMessage,
  uuidToMessage,
} from './protocol.js';

const { ReadReq: ReadReqPb, ReadResp: ReadRespPb, AppendReq: AppendReqPb, AppendResp: AppendRespPb } = streamsPb;
const { BatchAppendResp: BatchAppendRespPb } = streamsPb;

/** Server default for one append (`MaxAppendSize`, ClusterVNodeOptions). */
export const DEFAULT_MAX_APPEND_SIZE = 1_048_576;
/** Default `maxSearchWindow` of a filtered subscription; checkpoints come every multiplier × window. */
const DEFAULT_FILTER_WINDOW = 32;
const UINT64_MAX = (1n << 64n) - 1n;

export interface StreamsServiceContext {
  readonly log: TransactionLog;
  readonly maxAppendSize: number;
  readonly subscriptions: Set<LiveSubscription>;
}

export interface LiveSubscription {
  /** Ends the call with an error status, as a server drops a subscription. */
  drop(status: { code: grpc.status; details: string }): void;
}

type RpcError = Partial<grpc.StatusObject> & { code: grpc.status; details: string };

const rpcError = (code: grpc.status, details: string, trailers: Record<string, string> = {}): RpcError => {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(trailers)) metadata.set(key, value);
  return { code, details, metadata };
};

/** RpcExceptions.* of the server, the ones the double can raise. */
const errors = {
  requiredMetadataPropertyMissing: (property: string) =>
    rpcError(grpc.status.INVALID_ARGUMENT, `Required Metadata Property '${property}' is missing`, {
      exception: 'missing-required-metadata-property',
      'required-metadata-properties': property,
    }),
  maxAppendSizeExceeded: (maxAppendSize: number) =>
    rpcError(grpc.status.INVALID_ARGUMENT, `Maximum Append Size of ${maxAppendSize} Exceeded.`, {
      exception: 'maximum-append-size-exceeded',
      'maximum-append-size': String(maxAppendSize),
    }),
  invalidArgument: (what: string) => rpcError(grpc.status.INVALID_ARGUMENT, what),
};

const isRpcError = (value: unknown): value is RpcError =>
  typeof value === 'object' && value !== null && 'code' in value && 'details' in value;

const asRpcError = (error: unknown): RpcError =>
  isRpcError(error) ? error : rpcError(grpc.status.UNKNOWN, error instanceof Error ? error.message : String(error));

const parseUint64 = (text: string, what: string): bigint => {
  if (!/^\d+$/.test(text) || BigInt(text) > UINT64_MAX) throw errors.invalidArgument(`invalid ${what} ${text}`);
  return BigInt(text);
};

// --- Append and BatchAppend ------------------------------------------------------------------

type ProposedMessage = AppendReq.ProposedMessage | BatchAppendReq.ProposedMessage;

const toProposedEvent = (message: ProposedMessage): ProposedEvent => {
  const metadata = message.getMetadataMap();
  const type = metadata.get('type');
  if (type === undefined) throw errors.requiredMetadataPropertyMissing('type');
  const contentType = metadata.get('content-type');
  if (contentType === undefined) throw errors.requiredMetadataPropertyMissing('content-type');
  return {
    id: uuidFromMessage(message.getId()),
    type,
    isJson: contentType === 'application/json',
    data: message.getData_asU8(),
    metadata: message.getCustomMetadata_asU8(),
  };
};

/** What `Event.SizeOnDisk` counts towards MaxAppendSize, near enough. */
const sizeOnDisk = (event: ProposedEvent): number =>
  event.data.byteLength + event.metadata.byteLength + Buffer.byteLength(event.type, 'utf8');

const expectedVersionOfAppend = (options: AppendReq.Options): bigint => {
  const Case = AppendReqPb.Options.ExpectedStreamRevisionCase;
  switch (options.getExpectedStreamRevisionCase()) {
    case Case.REVISION:
      return parseUint64(options.getRevision(), 'expected revision');
    case Case.NO_STREAM:
      return EXPECTED_NO_STREAM;
    case Case.ANY:
      return EXPECTED_ANY;
    case Case.STREAM_EXISTS:
      return EXPECTED_STREAM_EXISTS;
    default:
      throw errors.invalidArgument('expected stream revision not set');
  }
};

const expectedVersionOfBatch = (options: BatchAppendReq.Options): bigint => {
  const Case = streamsPb.BatchAppendReq.Options.ExpectedStreamPositionCase;
  switch (options.getExpectedStreamPositionCase()) {
    case Case.STREAM_POSITION:
      return parseUint64(options.getStreamPosition(), 'expected stream position');
    case Case.NO_STREAM:
      return EXPECTED_NO_STREAM;
    case Case.ANY:
      return EXPECTED_ANY;
    case Case.STREAM_EXISTS:
      return EXPECTED_STREAM_EXISTS;
    default:
      throw errors.invalidArgument('expected stream position not set');
  }
};

/** Streams.Append: one options message, then one proposed message per event; conflicts in the body. */
const handleAppend =
  (context: StreamsServiceContext): IStreamsServer['append'] =>
  (call, callback) => {
    let options: AppendReq.Options | undefined;
    const events: ProposedEvent[] = [];
    let size = 0;
    let failure: RpcError | undefined;

    call.on('data', (request: AppendReq) => {
      if (failure) return;
      try {
        if (!options) {
          const first = request.getOptions();
          if (!first) throw rpcError(grpc.status.UNKNOWN, 'the first append message must carry options');
          options = first;
          return;
        }
        const proposed = request.getProposedMessage();
        if (!proposed) throw rpcError(grpc.status.UNKNOWN, 'expected a proposed message');
        const event = toProposedEvent(proposed);
        size += sizeOnDisk(event);
        if (size > context.maxAppendSize) throw errors.maxAppendSizeExceeded(context.maxAppendSize);
        events.push(event);
      } catch (error) {
        failure = asRpcError(error);
      }
    });
    call.on('error', () => {
      // The client went away; nothing to answer.
    });
    call.on('end', () => {
      if (failure) return callback(failure);
      if (!options) return callback(rpcError(grpc.status.UNKNOWN, 'append without options'));
      try {
        const streamId = streamNameOf(options.getStreamIdentifier());
        const expectedVersion = expectedVersionOfAppend(options);
        const outcome = context.log.append(streamId, expectedVersion, events);
        const response = new AppendRespPb();
        if (outcome.kind === 'committed') {
          const success = new AppendRespPb.Success();
          if (outcome.lastRevision < 0n) success.setNoStream(new sharedPb.Empty());
          else success.setCurrentRevision(outcome.lastRevision.toString());
          success.setPosition(
            new AppendRespPb.Position()
              .setCommitPosition(outcome.position.toString())
              .setPreparePosition(outcome.position.toString()),
          );
          response.setSuccess(success);
        } else {
          response.setWrongExpectedVersion(appendWrongExpectedVersion(options, expectedVersion, outcome.currentVersion));
        }
        callback(null, response);
      } catch (error) {
        callback(asRpcError(error));
      }
    });
  };

/** The server also fills the deprecated 20.6.0 fields; the client reads only these. */
const appendWrongExpectedVersion = (
  options: AppendReq.Options,
  expectedVersion: bigint,
  currentVersion: bigint,
): AppendResp.WrongExpectedVersion => {
  const Case = AppendReqPb.Options.ExpectedStreamRevisionCase;
  const wrong = new AppendRespPb.WrongExpectedVersion();
  switch (options.getExpectedStreamRevisionCase()) {
    case Case.ANY:
      wrong.setExpectedAny(new sharedPb.Empty());
      break;
    case Case.STREAM_EXISTS:
      wrong.setExpectedStreamExists(new sharedPb.Empty());
      break;
    case Case.NO_STREAM:
      wrong.setExpectedNoStream(new sharedPb.Empty());
      break;
    default:
      wrong.setExpectedRevision(expectedVersion.toString());
  }
  if (currentVersion < 0n) wrong.setCurrentNoStream(new sharedPb.Empty());
  else wrong.setCurrentRevision(currentVersion.toString());
  return wrong;
};

/**
 * Streams.BatchAppend: a bidirectional stream of (correlation id, options once, chunks of proposed
 * messages, is_final); one response per finished request; conflicts as a google.rpc.Status whose
 * Any detail is `event_store.client.WrongExpectedVersion`.
 */
const handleBatchAppend =
  (context: StreamsServiceContext): IStreamsServer['batchAppend'] =>
  (call) => {
    interface PendingWrite {
      readonly streamId: string;
      readonly expectedVersion: bigint;
      readonly events: ProposedEvent[];
      size: number;
    }
    const pending = new Map<string, PendingWrite>();

    call.on('data', (request: BatchAppendReq) => {
      const correlation = request.getCorrelationId();
      let streamName: string | undefined;
      const respond = (fill: (response: BatchAppendResp) => void) => {
        const response = new BatchAppendRespPb().setCorrelationId(correlation);
        if (streamName !== undefined) response.setStreamIdentifier(streamIdentifier(streamName));
        fill(response);
        call.write(response);
      };
      try {
        const correlationId = uuidFromMessage(correlation);
        const options = request.getOptions();
        if (options) {
          streamName = streamNameOf(options.getStreamIdentifier());
          if (!pending.has(correlationId)) {
            pending.set(correlationId, {
              streamId: streamName,
              expectedVersion: expectedVersionOfBatch(options),
              events: [],
              size: 0,
            });
          }
        }
        const write = pending.get(correlationId);
        if (!write) return;
        streamName = write.streamId;
        for (const message of request.getProposedMessagesList()) {
          const event = toProposedEvent(message);
          write.size += sizeOnDisk(event);
          write.events.push(event);
        }
        if (write.size > context.maxAppendSize) {
          pending.delete(correlationId);
          const detail = new sharedPb.MaximumAppendSizeExceeded().setMaxappendsize(context.maxAppendSize);
          return respond((response) =>
            response.setError(
              status(codePb.Code.INVALID_ARGUMENT, 'MaximumAppendSizeExceeded', detail.serializeBinary(), 'MaximumAppendSizeExceeded'),
            ),
          );
        }
        if (!request.getIsFinal()) return;
        pending.delete(correlationId);

        const outcome = context.log.append(write.streamId, write.expectedVersion, write.events);
        if (outcome.kind === 'committed') {
          const success = new BatchAppendRespPb.Success();
          if (outcome.lastRevision < 0n) success.setNoStream(new emptyPb.Empty());
          else success.setCurrentRevision(outcome.lastRevision.toString());
          success.setPosition(
            new sharedPb.AllStreamPosition()
              .setCommitPosition(outcome.position.toString())
              .setPreparePosition(outcome.position.toString()),
          );
          return respond((response) => response.setSuccess(success));
        }
        const detail = new sharedPb.WrongExpectedVersion();
        if (outcome.currentVersion < 0n) detail.setCurrentNoStream(new emptyPb.Empty());
        else detail.setCurrentStreamRevision(outcome.currentVersion.toString());
        switch (write.expectedVersion) {
          case EXPECTED_ANY:
            detail.setExpectedAny(new emptyPb.Empty());
            break;
          case EXPECTED_NO_STREAM:
            detail.setExpectedNoStream(new emptyPb.Empty());
            break;
          case EXPECTED_STREAM_EXISTS:
            detail.setExpectedStreamExists(new emptyPb.Empty());
            break;
          default:
            detail.setExpectedStreamPosition(write.expectedVersion.toString());
        }
        return respond((response) =>
          response.setError(
            status(codePb.Code.ALREADY_EXISTS, 'WrongExpectedVersion', detail.serializeBinary(), 'WrongExpectedVersion'),
          ),
        );
      } catch (error) {
        // The server answers a malformed request with Status.BadRequest for that correlation id.
        const rpc = asRpcError(error);
        const detail = new sharedPb.BadRequest().setMessage(rpc.details);
        return respond((response) =>
          response.setError(status(codePb.Code.INVALID_ARGUMENT, rpc.details, detail.serializeBinary(), 'BadRequest')),
        );
      }
    });
    call.on('error', () => {
      // Client cancellation (e.g. dispose()); nothing left to answer.
    });
    call.on('end', () => call.end());
  };

const status = (
  code: import('@eventstore/db-client/generated/code_pb.js').Code,
  message: string,
  detail: Uint8Array,
  detailType: string,
) => {
  const any = new anyPb.Any();
  any.pack(detail, `event_store.client.${detailType}`);
  return new statusPb.Status().setCode(code).setMessage(message).setDetails(any);
};

// --- Read ----------------------------------------------------------------------------------------

const toReadResp = (event: LoggedEvent, structuredIds: boolean): ReadResp => {
  const position = event.logPosition.toString();
  const recorded = new ReadRespPb.ReadEvent.RecordedEvent()
    .setId(uuidToMessage(event.id, structuredIds))
    .setStreamIdentifier(streamIdentifier(event.streamId))
    .setStreamRevision(event.revision.toString())
    .setPreparePosition(position)
    .setCommitPosition(position)
    .setData(event.data)
    .setCustomMetadata(event.metadata);
  const metadata = recorded.getMetadataMap();
  metadata.set('type', event.type);
  metadata.set('created', event.created.toString());
  metadata.set('content-type', event.isJson ? 'application/json' : 'application/octet-stream');
  // Every event the double writes is self-committed, so reads of either kind carry its position.
  const readEvent = new ReadRespPb.ReadEvent().setEvent(recorded).setCommitPosition(position);
  return new ReadRespPb().setEvent(readEvent);
};

const toPredicate = (filter: ReadReq.Options.FilterOptions): EventPredicate => {
  const Case = ReadReqPb.Options.FilterOptions.FilterCase;
  const filterCase = filter.getFilterCase();
  const expression = filterCase === Case.STREAM_IDENTIFIER ? filter.getStreamIdentifier() : filter.getEventType();
  if (!expression || filterCase === Case.FILTER_NOT_SET) throw errors.invalidArgument('filter expression not set');
  const subject = (event: LoggedEvent) => (filterCase === Case.STREAM_IDENTIFIER ? event.streamId : event.type);
  const regex = expression.getRegex();
  if (regex !== '') {
    const pattern = new RegExp(regex); // .NET Regex.IsMatch: unanchored unless the pattern anchors itself
    return (event) => pattern.test(subject(event));
  }
  const prefixes = expression.getPrefixList();
  return (event) => prefixes.some((prefix) => subject(event).startsWith(prefix));
};

const positionOfRequest = (position: ReadReq.Options.Position | undefined): TfPos => {
  if (!position) throw errors.invalidArgument('position not set');
  return {
    commit: parseUint64(position.getCommitPosition(), 'commit position'),
    prepare: parseUint64(position.getPreparePosition(), 'prepare position'),
  };
};

const handleRead =
  (context: StreamsServiceContext): IStreamsServer['read'] =>
  (call) => {
    try {
      const options = call.request.getOptions();
      if (!options) throw errors.invalidArgument('options not set');
      const uuidOption = options.getUuidOption();
      if (!uuidOption) throw errors.invalidArgument('uuid option not set');
      const structuredIds = uuidOption.getContentCase() !== ReadReqPb.Options.UUIDOption.ContentCase.STRING;

      const { StreamOptionCase, CountOptionCase, FilterOptionCase, ReadDirection } = ReadReqPb.Options;
      const streamCase = options.getStreamOptionCase();
      const countCase = options.getCountOptionCase();
      const filterCase = options.getFilterOptionCase();
      const backwards = options.getReadDirection() === ReadDirection.BACKWARDS;
      const filter = options.getFilter();
      const allowed = filterCase === FilterOptionCase.FILTER && filter ? toPredicate(filter) : undefined;

      if (streamCase === StreamOptionCase.STREAM && countCase === CountOptionCase.COUNT && filterCase === FilterOptionCase.NO_FILTER) {
        return readStream(context, call, options, backwards, structuredIds);
      }
      if (streamCase === StreamOptionCase.ALL && countCase === CountOptionCase.COUNT && filterCase !== FilterOptionCase.FILTER_OPTION_NOT_SET) {
        return readAll(context, call, options, backwards, structuredIds, allowed);
      }
      if (streamCase === StreamOptionCase.ALL && countCase === CountOptionCase.SUBSCRIPTION && !backwards && filterCase !== FilterOptionCase.FILTER_OPTION_NOT_SET) {
        return subscribeToAll(context, call, options, structuredIds, allowed && filter ? { allowed, filter } : undefined);
      }
      if (streamCase === StreamOptionCase.STREAM && countCase === CountOptionCase.SUBSCRIPTION) {
        throw rpcError(grpc.status.UNIMPLEMENTED, 'the EventStoreDB double does not implement stream subscriptions');
      }
      throw errors.invalidArgument(`invalid read combination (${streamCase}, ${countCase}, ${backwards ? 'backwards' : 'forwards'}, ${filterCase})`);
    } catch (error) {
      call.emit('error', asRpcError(error));
    }
  };

type ReadCall = Parameters<IStreamsServer['read']>[0];

const readStream = (
  context: StreamsServiceContext,
  call: ReadCall,
  options: ReadReq.Options,
  backwards: boolean,
  structuredIds: boolean,
) => {
  const stream = options.getStream();
  if (!stream) throw errors.invalidArgument('stream options not set');
  const streamId = streamNameOf(stream.getStreamIdentifier());
  const maxCount = parseUint64(options.getCount(), 'count');
  const RevisionCase = ReadReqPb.Options.StreamOptions.RevisionOptionCase;

  if (context.log.streamVersion(streamId) < 0n) {
    call.write(
      new ReadRespPb().setStreamNotFound(new ReadRespPb.StreamNotFound().setStreamIdentifier(streamIdentifier(streamId))),
    );
    call.end();
    return;
  }
  let events: LoggedEvent[];
  switch (stream.getRevisionOptionCase()) {
    case RevisionCase.REVISION: {
      const from = parseUint64(stream.getRevision(), 'revision');
      events = backwards
        ? context.log.readStreamBackwards(streamId, from, maxCount)
        : context.log.readStreamForwards(streamId, from, maxCount);
      break;
    }
    case RevisionCase.START:
      events = backwards ? [] : context.log.readStreamForwards(streamId, 0n, maxCount);
      break;
    case RevisionCase.END:
      events = backwards ? context.log.readStreamBackwards(streamId, null, maxCount) : [];
      break;
    default:
      throw errors.invalidArgument('stream revision option not set');
  }
  for (const event of events) call.write(toReadResp(event, structuredIds));
  call.end();
};

const readAll = (
  context: StreamsServiceContext,
  call: ReadCall,
  options: ReadReq.Options,
  backwards: boolean,
  structuredIds: boolean,
  allowed: EventPredicate | undefined,
) => {
  const all = options.getAll();
  if (!all) throw errors.invalidArgument('all options not set');
  const maxCount = parseUint64(options.getCount(), 'count');
  const AllCase = ReadReqPb.Options.AllOptions.AllOptionCase;
  let events: LoggedEvent[];
  switch (all.getAllOptionCase()) {
    case AllCase.POSITION: {
      const from = positionOfRequest(all.getPosition());
      events = backwards
        ? context.log.readAllBackwards(from, maxCount, allowed)
        : context.log.readAllForwards(from, maxCount, allowed);
      break;
    }
    case AllCase.START:
      events = backwards ? [] : context.log.readAllForwards({ commit: 0n, prepare: 0n }, maxCount, allowed);
      break;
    case AllCase.END:
      events = backwards ? context.log.readAllBackwards(null, maxCount, allowed) : [];
      break;
    default:
      throw errors.invalidArgument('all option not set');
  }
  for (const event of events) call.write(toReadResp(event, structuredIds));
  call.end();
};

/**
 * `$all` subscription (Enumerator.AllSubscription / AllSubscriptionFiltered): confirmation, catch-up
 * of the events strictly after the checkpoint, CaughtUp, then live events. Filtered subscriptions
 * also get Checkpoint messages every `checkpointIntervalMultiplier × maxSearchWindow` events the
 * filter considered, and one when going live. The double has no live-buffer limit, so it never
 * falls behind.
 */
const subscribeToAll = (
  context: StreamsServiceContext,
  call: ReadCall,
  options: ReadReq.Options,
  structuredIds: boolean,
  filtering: { readonly allowed: EventPredicate; readonly filter: ReadReq.Options.FilterOptions } | undefined,
) => {
  const all = options.getAll();
  if (!all) throw errors.invalidArgument('all options not set');
  const AllCase = ReadReqPb.Options.AllOptions.AllOptionCase;
  const lastIndexed = context.log.lastIndexedPosition;
  let checkpoint: TfPos;
  switch (all.getAllOptionCase()) {
    case AllCase.POSITION:
      checkpoint = positionOfRequest(all.getPosition());
      break;
    case AllCase.START:
      checkpoint = BEFORE_FIRST;
      break;
    case AllCase.END:
      checkpoint = { commit: lastIndexed, prepare: lastIndexed };
      break;
    default:
      throw errors.invalidArgument('all option not set');
  }

  const checkpointInterval = filtering
    ? BigInt(filtering.filter.getCheckpointintervalmultiplier()) *
      BigInt(
        filtering.filter.getWindowCase() === ReadReqPb.Options.FilterOptions.WindowCase.MAX
          ? filtering.filter.getMax()
          : DEFAULT_FILTER_WINDOW,
      )
    : 0n;
  if (filtering && checkpointInterval <= 0n) throw errors.invalidArgument('checkpoint interval must be positive');
  let considered = 0n;
  let lastConsidered: TfPos | undefined;

  const sendCheckpoint = (position: TfPos) => {
    call.write(
      new ReadRespPb().setCheckpoint(
        new ReadRespPb.Checkpoint()
          .setCommitPosition(position.commit.toString())
          .setPreparePosition(position.prepare.toString()),
      ),
    );
  };
  const consider = (event: LoggedEvent) => {
    const position = { commit: event.logPosition, prepare: event.logPosition };
    if (!filtering || filtering.allowed(event)) call.write(toReadResp(event, structuredIds));
    if (!filtering) return;
    lastConsidered = position;
    considered += 1n;
    if (considered >= checkpointInterval) {
      considered %= checkpointInterval;
      sendCheckpoint(position);
    }
  };

  let live = false;
  const stopListening = context.log.onCommitted((event) => {
    if (live) consider(event);
  });
  const subscription: LiveSubscription = {
    drop: (status) => {
      if (!context.subscriptions.delete(subscription)) return;
      stopListening();
      call.emit('error', rpcError(status.code, status.details));
    },
  };
  const release = () => {
    stopListening();
    context.subscriptions.delete(subscription);
  };
  call.on('cancelled', release);
  call.on('error', release);
  call.on('finish', release);
  context.subscriptions.add(subscription);

  call.write(new ReadRespPb().setConfirmation(new ReadRespPb.SubscriptionConfirmation().setSubscriptionId(randomUUID())));
  // Everything below runs in one turn of the event loop, so no commit can slip between catch-up and live.
  for (const event of context.log.eventsAfter(checkpoint)) consider(event);
  if (filtering) {
    const goingLive = lastConsidered ?? checkpoint;
    if (goingLive.commit >= 0n) sendCheckpoint(goingLive);
  }
  call.write(new ReadRespPb().setCaughtUp(new ReadRespPb.CaughtUp()));
  live = true;
};

export const createStreamsService = (context: StreamsServiceContext): IStreamsServer => ({
  read: handleRead(context),
  append: handleAppend(context),
  batchAppend: handleBatchAppend(context),
  delete: (_call, callback) =>
    callback(rpcError(grpc.status.UNIMPLEMENTED, 'the EventStoreDB double does not implement Delete')),
  tombstone: (_call, callback) =>
    callback(rpcError(grpc.status.UNIMPLEMENTED, 'the EventStoreDB double does not implement Tombstone')),
});

