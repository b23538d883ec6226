/**
 * The AI provider port: one chat completion for one prompt. `echo` answers deterministically (tests,
 * development); `openai` speaks the OpenAI-compatible chat-completions API.
 */

export interface AiCompletionRequest {
  readonly model: string;
  readonly prompt: string;
  readonly maxTokens?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface AiCompletion {
  readonly response: string;
}

export interface AiProvider {
  readonly name: 'echo' | 'openai';
  complete(request: AiCompletionRequest): Promise<AiCompletion>;
}

/** The provider failed, timed out or answered something unusable. `detail` is safe to show. */
export class AiProviderError extends Error {
  override name = 'AiProviderError';
  constructor(
    readonly detail: string,
    override readonly cause?: unknown,
  ) {
    super(detail);
  }
}
