import type { Config } from '../../config.js';
import { createEchoProvider } from './echo.js';
import { createOpenAiProvider } from './openai.js';
import type { AiProvider } from './provider.js';

export { AiProviderError, type AiProvider, type AiCompletion, type AiCompletionRequest } from './provider.js';
export { createEchoProvider } from './echo.js';
export { createOpenAiProvider } from './openai.js';

/** The provider the configuration names (config.ts already checked that openai has a base URL). */
export function createAiProvider(config: Config): AiProvider {
  if (config.ai.provider === 'openai') {
    if (!config.ai.baseUrl) throw new Error('AI_BASE_URL is required when AI_PROVIDER=openai');
    return createOpenAiProvider({ baseUrl: config.ai.baseUrl, apiKey: config.ai.apiKey, timeoutMs: config.ai.timeoutMs });
  }
  return createEchoProvider();
}
