import { describe, expect, it } from 'vitest';
import { cheapestModel } from '../../../src/http/routes/components.js';
import { createGoogleVerifier, GoogleVerificationError } from '../../../src/membership/google.js';

describe('Google verifier', () => {
  it('without configured client ids refuses as unavailable, before any network call', async () => {
    const verifier = createGoogleVerifier({ clientIds: [], certsUrl: 'http://127.0.0.1:1/never' });
    const error = await verifier.verify('a.b.c').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GoogleVerificationError);
    expect((error as GoogleVerificationError).reason).toBe('unavailable');
  });
});

describe('default AI component model', () => {
  it('is the cheapest priced model, the first on a tie', () => {
    expect(cheapestModel({ 'gpt-4': 10, 'gpt-3.5-turbo': 1, 'claude-3-sonnet': 3 })).toBe('gpt-3.5-turbo');
    expect(cheapestModel({ a: 2, b: 2 })).toBe('a');
    expect(cheapestModel({})).toBeUndefined();
  });
});
