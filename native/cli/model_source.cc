// See model_source.h.
#include "model_source.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "kv_cache.h"
#include "random_weights.h"

namespace openlora::cli {

namespace {

/** Fill a tensor with random_weights.h's bf16 values (parallel: the 8B shape is 8e9 values). */
void fillRandom(uint64_t seed, const std::string& name, float* dst, int64_t n, int threads) {
  float scale, offset;
  initOf(name, &scale, &offset);
  const uint64_t stream = streamOf(name);
  auto work = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) dst[i] = bf16ToFloat(randomBf16(seed, stream, uint64_t(i), scale, offset));
  };
  if (n < (1 << 20) || threads <= 1) return work(0, n);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++) ts.emplace_back(work, n * t / threads, n * (t + 1) / threads);
  for (auto& t : ts) t.join();
}

}  // namespace

ModelConfig randomConfig(const Args& a) {
  ModelConfig c;
  c.modelType = "llama";
  c.maxPositionEmbeddings = 8192;
  c.rmsNormEps = 1e-5;
  if (a.has("random-llama3-8b")) {
    c.hiddenSize = 4096, c.numHiddenLayers = 32, c.numAttentionHeads = 32, c.numKeyValueHeads = 8, c.intermediateSize = 14336;
    c.vocabSize = 128256;
    c.ropeTheta = 500000.0;
  } else {
    std::vector<int> s = parseInts(a.get("random-shape"), "--random-shape");
    if (s.size() != 5) throw UsageError("--random-shape wants hidden,layers,heads,kvheads,inter");
    c.hiddenSize = s[0], c.numHiddenLayers = s[1], c.numAttentionHeads = s[2], c.numKeyValueHeads = s[3], c.intermediateSize = s[4];
    c.vocabSize = 4096;
    c.ropeTheta = 500000.0;
  }
  if (a.has("vocab")) c.vocabSize = std::stoi(a.get("vocab"));
  if (a.has("layers")) c.numHiddenLayers = std::stoi(a.get("layers"));
  c.tieWordEmbeddings = a.has("tied");
  if (c.numAttentionHeads <= 0 || c.hiddenSize % c.numAttentionHeads || c.numKeyValueHeads <= 0 ||
      c.numAttentionHeads % c.numKeyValueHeads) {
    throw UsageError("random shape: heads must divide hidden and kvheads must divide heads");
  }
  c.headDim = c.hiddenSize / c.numAttentionHeads;
  c.completeDefaults();
  return c;
}

ResidentMemory residentMemory() {
  ResidentMemory m;
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    long long kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %lld kB", &kb) == 1) m.rssBytes = kb * 1024;
    if (std::sscanf(line.c_str(), "VmHWM: %lld kB", &kb) == 1) m.hwmBytes = kb * 1024;
  }
  return m;
}

ModelSource loadSource(const Args& a) {
  // Fail fast (exit 3, SKIP) before loading or generating gigabytes for an unavailable backend.
  try {
    chooseBackend(a.get("backend", "cpu"));
  } catch (const std::exception& e) {
    throw Unavailable(e.what());
  }
  ModelSource src;
  if (a.has("model")) {
    src.label = a.get("model");
    src.model = Model::load(src.label, parseQuantization(a.get("quantization", "none")));
    src.config = src.model->config();
    return src;
  }
  if (!a.has("random-llama3-8b") && !a.has("random-shape")) throw UsageError("give --model DIR, --random-llama3-8b or --random-shape");
  src.random = true;
  src.seed = std::stoull(a.get("seed", "1234"));
  src.config = randomConfig(a);
  const ModelConfig& c = src.config;
  src.label = "random(seed " + std::to_string(src.seed) + ") hidden " + std::to_string(c.hiddenSize) + ", layers " +
              std::to_string(c.numHiddenLayers) + ", heads " + std::to_string(c.numAttentionHeads) + "/" +
              std::to_string(c.numKeyValueHeads) + ", inter " + std::to_string(c.intermediateSize) + ", vocab " +
              std::to_string(c.vocabSize);
  const int threads = threadsOf(a);
  const uint64_t seed = src.seed;
  const double t0 = nowSec();
  src.model = Model::fromWeights(c, [&](const std::string& name, float* dst, int64_t n) { fillRandom(seed, name, dst, n, threads); },
                                 parseQuantization(a.get("quantization", "none")), "BF16");
  std::fprintf(stderr, "[openlora-cli] generated %s on the host in %.1f s\n", src.label.c_str(), nowSec() - t0);
  return src;
}

std::unique_ptr<ForwardBackend> backendFor(const Args& a, const ModelSource& src, std::string* reason) {
  const std::string act = a.get("activation-dtype", "float32");
  if (act != "float32" && act != "bfloat16") throw std::invalid_argument("--activation-dtype must be float32 or bfloat16, got " + act);
  try {
    auto b = makeForwardBackend(a.get("backend", "cpu"), src.model, threadsOf(a), reason, 0, act == "bfloat16");
    b->uploadWeights();
    return b;
  } catch (const std::exception& e) {
    throw Unavailable(e.what());
  }
}

std::shared_ptr<const LoraAdapter> randomAdapter(const ModelConfig& c, int rank, uint64_t seed) {
  auto ad = std::make_shared<LoraAdapter>();
  ad->numLayers = c.numHiddenLayers;
  ad->pairs.resize(size_t(c.numHiddenLayers) * kNumLoraModules);
  for (int l = 0; l < c.numHiddenLayers; l++) {
    for (int m = 0; m < kNumLoraModules; m++) {
      const LoraModule mod = LoraModule(m);
      const int64_t in = loraModuleIn(c, mod), out = loraModuleOut(c, mod);
      auto p = std::make_unique<LoraPair>();
      p->rank = rank;
      p->scaling = 2.0f;
      const uint64_t s = streamOf("lora." + std::to_string(l) + "." + hf::moduleName(mod));
      const float sa = 1.7320508f / std::sqrt(float(in)), sb = 0.02f * 1.7320508f;
      // Kept BF16 (the dtype of most PEFT adapter files; the loader keeps 16-bit files as they are).
      std::vector<uint16_t> av(size_t(rank * in)), bv(size_t(rank * out));
      for (size_t i = 0; i < av.size(); i++) av[i] = randomBf16(seed, s, i, sa, 0);
      for (size_t i = 0; i < bv.size(); i++) bv[i] = randomBf16(seed, s + 1, i, sb, 0);
      p->a.assign16(std::move(av), DType::BF16);
      p->bT.assign16(std::move(bv), DType::BF16);
      ad->pairs[size_t(l) * kNumLoraModules + size_t(m)] = std::move(p);
    }
  }
  return ad;
}

int maxRankOf(const LoraAdapter& ad) {
  int r = 1;
  for (const auto& p : ad.pairs) {
    if (p) r = std::max(r, p->rank);
  }
  return r;
}

int64_t adapterBytes(const LoraAdapter& ad) {
  int64_t b = 0;
  for (const auto& p : ad.pairs) {
    if (p) b += int64_t(p->a.bytes() + p->bT.bytes());
  }
  return b;
}

std::vector<float> lastLogits(ForwardBackend& be, const ModelConfig& c, const std::vector<int32_t>& ids,
                              const std::vector<ActiveLora>& loras) {
  const int bs = 16;
  KvCache cache(c.numHiddenLayers, c.numKeyValueHeads, c.headDim, int((ids.size() + bs - 1) / bs), bs, false);
  be.attachKv(cache);
  struct Detach {  // the backend's storage for this pool goes with it
    ForwardBackend& b;
    KvCache& c;
    ~Detach() { b.detachKv(c); }
  } detach{be, cache};
  SequenceKv kv(&cache, c.maxPositionEmbeddings);
  if (!kv.grow(int(ids.size()))) throw std::logic_error("private KV pool too small");
  BatchEntry e;
  e.tokens = ids.data();
  e.numTokens = int(ids.size());
  e.kv = &kv;
  e.loras = &loras;
  std::vector<float> logits;
  be.forward({e}, &logits);
  return logits;
}

}  // namespace openlora::cli
