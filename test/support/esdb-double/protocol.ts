/**
 * The EventStoreDB wire protocol, taken from the client package's own generated code.
 *
 * Loaded through `require` on purpose: google-protobuf registers every generated message in one
 * process-wide namespace, so the double must use the very module instances the client under test
 * uses (see notes/event-sourcing.md §3). Deep paths work because the package has no exports map.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const streamsPb =
  require('@eventstore/db-client/generated/streams_pb.js') as typeof import('@eventstore/db-client/generated/streams_pb.js');
export const streamsGrpc =
  require('@eventstore/db-client/generated/streams_grpc_pb.js') as typeof import('@eventstore/db-client/generated/streams_grpc_pb.js');
export const sharedPb =
  require('@eventstore/db-client/generated/shared_pb.js') as typeof import('@eventstore/db-client/generated/shared_pb.js');
export const statusPb =
  require('@eventstore/db-client/generated/status_pb.js') as typeof import('@eventstore/db-client/generated/status_pb.js');
export const codePb =
  require('@eventstore/db-client/generated/code_pb.js') as typeof import('@eventstore/db-client/generated/code_pb.js');
export const serverFeaturesPb =
  require('@eventstore/db-client/generated/serverfeatures_pb.js') as typeof import('@eventstore/db-client/generated/serverfeatures_pb.js');
export const serverFeaturesGrpc =
  require('@eventstore/db-client/generated/serverfeatures_grpc_pb.js') as typeof import('@eventstore/db-client/generated/serverfeatures_grpc_pb.js');
export const anyPb =
  require('google-protobuf/google/protobuf/any_pb.js') as typeof import('google-protobuf/google/protobuf/any_pb.js');
export const emptyPb =
  require('google-protobuf/google/protobuf/empty_pb.js') as typeof import('google-protobuf/google/protobuf/empty_pb.js');

export type UUIDMessage = import('@eventstore/db-client/generated/shared_pb.js').UUID;
export type StreamIdentifierMessage = import('@eventstore/db-client/generated/shared_pb.js').StreamIdentifier;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Canonical lower-case text, as the server's `Guid.ToString()` prints it. Throws on malformed input. */
export const uuidFromMessage = (uuid: UUIDMessage | undefined): string => {
  if (!uuid) throw new TypeError('missing UUID');
  if (uuid.hasStructured()) {
    const structured = uuid.getStructured();
    if (!structured) throw new TypeError('missing structured UUID');
    const msb = BigInt.asUintN(64, BigInt(structured.getMostSignificantBits()));
    const lsb = BigInt.asUintN(64, BigInt(structured.getLeastSignificantBits()));
    const hex = msb.toString(16).padStart(16, '0') + lsb.toString(16).padStart(16, '0');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  const text = uuid.getString();
  if (!UUID_PATTERN.test(text)) throw new TypeError(`malformed UUID ${JSON.stringify(text)}`);
  return text.toLowerCase();
};

/** The server answers in the form the reader asked for (ReadReq.Options.UUIDOption). */
export const uuidToMessage = (id: string, structured: boolean): UUIDMessage => {
  const message = new sharedPb.UUID();
  if (!structured) return message.setString(id);
  const hex = id.replaceAll('-', '');
  const bits = new sharedPb.UUID.Structured()
    .setMostSignificantBits(BigInt.asIntN(64, BigInt(`0x${hex.slice(0, 16)}`)).toString(10))
    .setLeastSignificantBits(BigInt.asIntN(64, BigInt(`0x${hex.slice(16)}`)).toString(10));
  return message.setStructured(bits);
};

export const streamNameOf = (identifier: StreamIdentifierMessage | undefined): string => {
  if (!identifier) throw new TypeError('missing stream identifier');
  return Buffer.from(identifier.getStreamName_asU8()).toString('utf8');
};

export const streamIdentifier = (streamId: string): StreamIdentifierMessage =>
  new sharedPb.StreamIdentifier().setStreamName(Buffer.from(streamId, 'utf8'));
