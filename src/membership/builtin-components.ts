import type { JsonObject } from '../core/event-store.js';

/** The built-in component catalog every user sees (GET /components). Static, defined in code. */

export interface BuiltinComponent {
  readonly id: string;
  readonly name: string;
  readonly category: string;
  readonly description: string;
  readonly definition: JsonObject;
}

const port = (name: string, type: string): JsonObject => ({ name, type });

export const BUILTIN_COMPONENTS: readonly BuiltinComponent[] = Object.freeze<BuiltinComponent[]>([
  {
    id: '00000000-0000-4000-8000-000000000001',
    name: 'Text input',
    category: 'input',
    description: 'A text value typed by the user when the flow runs.',
    definition: { kind: 'text_input', inputs: [], outputs: [port('text', 'string')], config: { multiline: false } },
  },
  {
    id: '00000000-0000-4000-8000-000000000002',
    name: 'HTTP request',
    category: 'integration',
    description: 'Calls an HTTP endpoint and returns status, headers and body.',
    definition: {
      kind: 'http_request',
      inputs: [port('url', 'string'), port('body', 'json')],
      outputs: [port('status', 'number'), port('body', 'json')],
      config: { method: 'GET', timeout_ms: 10000 },
    },
  },
  {
    id: '00000000-0000-4000-8000-000000000003',
    name: 'LLM prompt',
    category: 'ai',
    description: 'Sends a prompt to a language model (charged in credits per request).',
    definition: { kind: 'llm_prompt', inputs: [port('prompt', 'string')], outputs: [port('response', 'string')], config: { model: 'gpt-3.5-turbo' } },
  },
  {
    id: '00000000-0000-4000-8000-000000000004',
    name: 'JSON parse',
    category: 'transform',
    description: 'Parses JSON text into a value.',
    definition: { kind: 'json_parse', inputs: [port('text', 'string')], outputs: [port('value', 'json')], config: {} },
  },
  {
    id: '00000000-0000-4000-8000-000000000005',
    name: 'Condition',
    category: 'logic',
    description: 'Routes the flow by a boolean expression.',
    definition: {
      kind: 'condition',
      inputs: [port('value', 'json')],
      outputs: [port('then', 'json'), port('else', 'json')],
      config: { expression: 'value != null' },
    },
  },
  {
    id: '00000000-0000-4000-8000-000000000006',
    name: 'Output',
    category: 'output',
    description: 'Shows a value as the flow result.',
    definition: { kind: 'output', inputs: [port('value', 'json')], outputs: [], config: {} },
  },
]);
