import { describe, expect, it } from 'vitest';
import { completeAnswer } from '../../../bench/load.js';

/** The benchmark's HTTP client counts an answer only when all of it has arrived. */
describe('completeAnswer', () => {
  const answer = 'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}';

  it('waits for the end of the headers and for the whole body', () => {
    expect(completeAnswer(Buffer.from(answer.slice(0, 30)))).toBeNull();
    expect(completeAnswer(Buffer.from(answer.slice(0, -1)))).toBeNull();
    expect(completeAnswer(Buffer.from(answer))).toEqual({ status: 201, length: Buffer.byteLength(answer) });
  });

  it('measures one answer when more bytes follow it', () => {
    expect(completeAnswer(Buffer.from(answer + answer.slice(0, 10)))).toEqual({ status: 201, length: Buffer.byteLength(answer) });
  });

  it('refuses an answer it cannot delimit', () => {
    expect(() => completeAnswer(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'))).toThrow(/content-length/);
  });
});
