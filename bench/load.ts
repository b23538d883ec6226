import { connect, type Socket } from 'node:net';

/**
 * The benchmark's load generator: N keep-alive HTTP/1.1 connections on loopback, each sending its next
 * request as soon as the previous answer is complete (one in flight per connection, like autocannon
 * without pipelining). It exists because the generator shares this 2-core machine with the service
 * and Postgres: autocannon took about 110 µs of CPU per request, this takes a fraction of that, and
 * what it does not burn the service can use. Requests are written as raw HTTP; answers are read up
 * to their Content-Length (the service always sends one). Latency is measured per request from the
 * write to the last byte of the answer. When the time is up, no new request is sent and every one in
 * flight is waited for, so each request sent has a known answer.
 */

export interface LoadRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
}

export interface LoadOptions<C> {
  readonly host: string;
  readonly port: number;
  readonly connections: number;
  readonly seconds: number;
  /** The next request and a context handed back with its answer. */
  readonly next: () => { request: LoadRequest; context: C };
  readonly onResponse?: (status: number, context: C) => void;
}

export interface LoadResult {
  readonly requests: number;
  /** Answers with a 2xx status. */
  readonly ok: number;
  readonly errors: number;
  /** Seconds from the first request to the last answer. */
  readonly duration: number;
  readonly latency: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly statuses: Readonly<Record<number, number>>;
}

const HEADER_END = Buffer.from('\r\n\r\n');

function encode(request: LoadRequest, host: string): string {
  let text = `${request.method} ${request.path} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const [name, value] of Object.entries(request.headers)) text += `${name}: ${value}\r\n`;
  const body = request.body ?? '';
  text += `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  return text;
}

/** Status and total length of the first complete answer in `buffer`, or null when it is incomplete. */
export function completeAnswer(buffer: Buffer): { status: number; length: number } | null {
  const headerEnd = buffer.indexOf(HEADER_END);
  if (headerEnd < 0) return null;
  const head = buffer.toString('latin1', 0, headerEnd);
  const status = Number(head.slice(9, 12));
  const match = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (!match) throw new Error(`answer without content-length: ${head.split('\r\n')[0]}`);
  const length = headerEnd + HEADER_END.length + Number(match[1]);
  return buffer.length >= length ? { status, length } : null;
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

export async function runLoad<C>(options: LoadOptions<C>): Promise<LoadResult> {
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  let ok = 0;
  let errors = 0;
  const started = performance.now();
  const until = started + options.seconds * 1000;
  let finished = started;

  const client = () =>
    new Promise<void>((resolve) => {
      const socket: Socket = connect({ host: options.host, port: options.port, noDelay: true });
      let buffer: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      let context: C | null = null;
      const send = () => {
        if (performance.now() >= until) {
          socket.end();
          return;
        }
        const next = options.next();
        context = next.context;
        sentAt = performance.now();
        socket.write(encode(next.request, options.host));
      };
      socket.on('connect', send);
      socket.on('data', (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
        let answer: ReturnType<typeof completeAnswer>;
        try {
          answer = completeAnswer(buffer);
        } catch {
          errors += 1;
          socket.destroy();
          return;
        }
        if (!answer) return;
        const now = performance.now();
        latencies.push(now - sentAt);
        finished = now;
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        if (answer.status >= 200 && answer.status < 300) ok += 1;
        options.onResponse?.(answer.status, context as C);
        buffer = buffer.subarray(answer.length);
        send();
      });
      socket.on('error', () => {
        errors += 1;
      });
      socket.on('close', () => resolve());
    });

  await Promise.all(Array.from({ length: options.connections }, client));
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    ok,
    errors,
    duration: (finished - started) / 1000,
    latency: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? Number.NaN },
    statuses,
  };
}
