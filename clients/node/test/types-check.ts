// types-check.ts — compiled (never run) by `npm run typecheck` (tsc
// --noEmit): typical uses of the client must type-check against index.d.ts,
// and the ones marked @ts-expect-error must not.
import { Client, NotFound, SearchResult, VecshardError, UINT64_MAX } from '..';

// Exercises every method's declared signature.
async function use(c: Client): Promise<void> {
  const cfg = await c.createCollection('docs', 4, { metric: 'cosine', shards: 2, M: 32 });
  const dim: number = cfg.dim;
  const n: number = await c.upsert('docs', new BigUint64Array([1n, 2n]), new Float32Array(2 * dim), {
    payloads: ['a', Buffer.from('b')],
    progress: (done: number, total: number) => done / total,
  });
  const r: SearchResult = await c.search('docs', [new Float32Array(4)], 10, { ef: 100, withPayload: true });
  const first: bigint = r.ids[0];
  const d: number = r.distances[0];
  const padded: boolean = r.ids[r.k - 1] === UINT64_MAX;
  const g = await c.get('docs', [1, 2n, '3']);
  const v: Float32Array | null = g.points[0].vector;
  const deleted: number = await c.delete('docs', [1]);
  const st = await c.status();
  const rev: bigint = st.revision;
  try {
    await c.describe('nope');
  } catch (e) {
    if (e instanceof NotFound) {
      const code: number = e.code;
      const name: string = e.codeName;
      void [code, name];
    } else if (e instanceof VecshardError) {
      void e.message;
    }
  }
  // @ts-expect-error metric is one of 'l2' | 'ip' | 'cosine'
  await c.createCollection('x', 4, { metric: 'hamming' });
  // @ts-expect-error k is a number
  await c.search('docs', [[1, 2, 3, 4]], '10');
  void [n, first, d, padded, v, deleted, rev, new Client({ timeoutMs: 5 }), new Client('h:1', { apiKey: 'k' })];
}

void use;
