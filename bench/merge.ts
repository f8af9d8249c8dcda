/**
 * Merge strategies at a real shape, without a model or files: `mergeModule` (adapters/merge/
 * materialize.ts) on random LoRA pairs of the SmolLM2-360M shape (hidden 960, intermediate 2560,
 * q 960, kv 320, all seven projections), two members of rank 8 and two of rank 64.
 *
 *   node --import tsx bench/merge.ts [--layers N] [--strategies svd,ties_svd,...] [--ranks 8,64]
 *
 * Times N layers (default 1; each layer has all seven modules) and prints seconds per layer and
 * the whole-model estimate (x 32 layers: every layer has the same shapes). One thread, the cost a
 * merge worker pays.
 */
import { mergeModule, type MergeStrategy } from '../adapters/merge/materialize.ts';
import { mulberry32 } from '../adapters/merge/strategies.ts';
import type { LoraPair } from '../adapters/merge/tensors.ts';

const SHAPE = { hidden: 960, intermediate: 2560, q: 960, kv: 320, layers: 32 };
/** [in, out] of each projection. */
const MODULES: Record<string, [number, number]> = {
  q_proj: [SHAPE.hidden, SHAPE.q], k_proj: [SHAPE.hidden, SHAPE.kv], v_proj: [SHAPE.hidden, SHAPE.kv], o_proj: [SHAPE.q, SHAPE.hidden],
  gate_proj: [SHAPE.hidden, SHAPE.intermediate], up_proj: [SHAPE.hidden, SHAPE.intermediate], down_proj: [SHAPE.intermediate, SHAPE.hidden],
};

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const layers = Number(arg('layers', '1'));
const strategies = arg('strategies', 'svd,ties_svd,dare_ties_svd,magnitude_prune_svd,ties,magnitude_prune,linear').split(',') as MergeStrategy[];
const ranks = arg('ranks', '8,64').split(',').map(Number);

/** A random pair like a trained adapter's: A ~ U(-1/sqrt(in), 1/sqrt(in)), B small. */
function pair(module: string, r: number, seed: number): LoraPair {
  const [inF, out] = MODULES[module]!;
  const rnd = mulberry32(seed);
  const a = 1 / Math.sqrt(inF);
  return {
    name: `model.layers.0.${module}`, layer: 0, module, rank: r, in: inF, out, scaling: 2,
    A: Float32Array.from({ length: r * inF }, () => (2 * rnd() - 1) * a), B: Float32Array.from({ length: out * r }, () => (rnd() - 0.5) * 0.02),
  };
}

for (const r of ranks) {
  for (const strategy of strategies) {
    let seconds = 0;
    for (let l = 0; l < layers; l++) {
      for (const module of Object.keys(MODULES)) {
        const [inF, out] = MODULES[module]!;
        const present = [0, 1].map((i) => ({ pair: pair(module, r, 1000 * l + 17 * i + module.length), w: 0.5, i }));
        const t0 = performance.now();
        mergeModule(strategy, `model.layers.${l}.${module}`, present, strategy.endsWith('svd') ? 8 : r, { in: inF, out }, { density: 0.5, seed: 0 });
        seconds += (performance.now() - t0) / 1000;
      }
    }
    const perLayer = seconds / layers;
    console.log(`rank ${String(r).padStart(2)} ${strategy.padEnd(20)} ${perLayer.toFixed(2).padStart(7)} s/layer  ~${(perLayer * SHAPE.layers).toFixed(1).padStart(7)} s for ${SHAPE.layers} layers`);
  }
}
