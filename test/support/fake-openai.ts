import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local OpenAI-compatible chat-completions server for tests. `mode` decides how it answers:
 * `ok` (a completion `fake:<model>:<prompt>`), `fail` (500 with an error body), `garbage` (200 without
 * choices), `hang` (answers after `hangMs`).
 */
export type FakeOpenAiMode = 'ok' | 'fail' | 'garbage' | 'hang';

export interface FakeOpenAiCall {
  readonly path: string;
  readonly authorization: string | undefined;
  readonly body: { model?: string; messages?: { role: string; content: string }[]; max_tokens?: number };
}

export interface FakeOpenAi {
  /** Base URL to use as AI_BASE_URL (ends in /v1). */
  readonly baseUrl: string;
  readonly calls: FakeOpenAiCall[];
  mode: FakeOpenAiMode;
  hangMs: number;
  close(): Promise<void>;
}

const readBody = async (request: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

export async function startFakeOpenAi(mode: FakeOpenAiMode = 'ok'): Promise<FakeOpenAi> {
  const calls: FakeOpenAiCall[] = [];
  const state = { mode, hangMs: 5000 };
  const server: Server = createServer(async (request, response) => {
    const text = await readBody(request);
    let body: FakeOpenAiCall['body'] = {};
    try {
      body = JSON.parse(text) as FakeOpenAiCall['body'];
    } catch {
      // recorded as empty
    }
    calls.push({ path: request.url ?? '', authorization: request.headers.authorization, body });
    const send = (status: number, payload: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(payload));
    };
    if (request.method !== 'POST' || request.url !== '/v1/chat/completions') return send(404, { error: { message: 'not found' } });
    const completion = () =>
      send(200, {
        id: `chatcmpl-${calls.length}`,
        object: 'chat.completion',
        model: body.model,
        choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: `fake:${body.model}:${body.messages?.at(-1)?.content ?? ''}` } }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      });
    switch (state.mode) {
      case 'ok':
        return completion();
      case 'fail':
        return send(500, { error: { message: 'internal upstream failure with secret details', type: 'server_error' } });
      case 'garbage':
        return send(200, { unexpected: true });
      case 'hang': {
        const timer = setTimeout(completion, state.hangMs);
        response.on('close', () => clearTimeout(timer));
        return;
      }
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    calls,
    get mode() {
      return state.mode;
    },
    set mode(value: FakeOpenAiMode) {
      state.mode = value;
    },
    get hangMs() {
      return state.hangMs;
    },
    set hangMs(value: number) {
      state.hangMs = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
