import { Engine } from '../native/engine.ts';
import { modelDir, params } from '../test/native/helpers.ts';
const streams = Number(process.argv[2] ?? 16);
const e = await Engine.load(modelDir, { threads: 2, maxNumSeqs: 64 });
const t0 = performance.now(); let n = 0;
while (performance.now() - t0 < 8000) {
  const hs = []; for (let i = 0; i < streams; i++) hs.push(e.generate(params([1019, 84, 104], { maxTokens: 128, logitBias: [[1020, -100], [1023, -100]] })).done);
  for (const h of hs) n += (await h).completionTokens;
}
console.log('tok/s', n / ((performance.now() - t0) / 1000));
await e.dispose();
