import type { AiProvider } from './provider.js';

/** Deterministic: the same model and prompt always give the same answer (roughly `max_tokens` × 4 characters at most). */
export function createEchoProvider(): AiProvider {
  return {
    name: 'echo',
    async complete({ model, prompt, maxTokens }) {
      const response = `[echo:${model}] ${prompt}`;
      return { response: maxTokens === undefined ? response : response.slice(0, Math.max(1, maxTokens * 4)) };
    },
  };
}
