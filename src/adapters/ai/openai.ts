import { z } from 'zod';
import { AiProviderError, type AiProvider } from './provider.js';

const completionSchema = z.object({
  choices: z
    .array(z.object({ message: z.object({ content: z.string().nullable().optional() }) }))
    .min(1),
});

export interface OpenAiProviderOptions {
  /** e.g. `https://api.openai.com/v1`; `/chat/completions` is appended. */
  readonly baseUrl: string;
  readonly apiKey?: string | undefined;
  /** Whole-request timeout. Default 30 s. */
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
}

/** Any OpenAI-compatible chat-completions endpoint. Errors never carry the upstream body to clients. */
export function createOpenAiProvider(options: OpenAiProviderOptions): AiProvider {
  const url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const doFetch = options.fetch ?? fetch;
  return {
    name: 'openai',
    async complete({ model, prompt, maxTokens, signal }) {
      const timeout = AbortSignal.timeout(timeoutMs);
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
      if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
      let response: Response;
      try {
        response = await doFetch(url, {
          method: 'POST',
          headers,
          body: JSON.stringify({
            model,
            messages: [{ role: 'user', content: prompt }],
            ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
          }),
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
      } catch (error) {
        throw new AiProviderError(timeout.aborted ? `the AI provider did not answer within ${timeoutMs} ms` : 'the AI provider could not be reached', error);
      }
      let body: unknown;
      try {
        body = await response.json();
      } catch (error) {
        throw new AiProviderError(`the AI provider answered ${response.status} without JSON`, error);
      }
      if (!response.ok) throw new AiProviderError(`the AI provider answered ${response.status}`, body);
      const parsed = completionSchema.safeParse(body);
      const content = parsed.success ? parsed.data.choices[0]?.message.content : undefined;
      if (typeof content !== 'string') throw new AiProviderError('the AI provider answered without a completion', body);
      return { response: content };
    },
  };
}
