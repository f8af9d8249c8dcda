/**
 * Small random PEFT adapters for the demo model (robustness and soak): q_proj + v_proj, rank
 * 2-4, F32 weights of magnitude <= 0.01. Deterministic per seed. Built on the one random-adapter
 * writer (test/adapters/gen.ts).
 */
import { join } from 'node:path';
import { writeRandomAdapter } from '../adapters/gen.ts';
import { tinyInfo } from '../adapters/helpers.ts';

export { mulberry32 as rng } from '../../adapters/merge/strategies.ts';

/** Write `count` adapters named `rand-000`... under `root`; returns their names. */
export async function writeRandomAdapters(root: string, count: number, seed = 7): Promise<string[]> {
  const info = tinyInfo();
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const rank = 2 + (i % 3);
    const name = `rand-${String(i).padStart(3, '0')}`;
    await writeRandomAdapter(join(root, name), info, { rank, modules: ['q_proj', 'v_proj'], dtype: 'F32', seed: seed * 100_003 + i, scale: 0.01 });
    names.push(name);
  }
  return names;
}
