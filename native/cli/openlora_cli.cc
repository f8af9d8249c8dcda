// openlora-cli: the engine core without Node, for checks and timings on any machine with a C++
// compiler (and, with CUDA, on a GPU machine that has only cmake and nvcc).
//
//   openlora-cli logits   --model DIR | --random-shape H,L,NH,NKV,I [--vocab V] [--seed S]
//                         [--adapter DIR:WEIGHT ...] --prompt-ids 1,2,3 [--backend B] [--out F.json]
//   openlora-cli check    --model DIR --reference reference.json [--adapters DIR] [--backend B] [--tol T]
//   openlora-cli crosscheck --random-llama3-8b | --random-shape ... [--layers N] [--backend B] [--tol T]
//   openlora-cli bench    --model DIR | --random-llama3-8b | --random-shape ... [--backend B]
//                         [--batch 1,16,64,128] [--adapters 0,16,128] [--rank 16 | --ranks 8,16,32,64] [--steps N]
//                         [--rounds R] [--tied]
//                         [--kv-cache-dtype float32|bfloat16]
//                         [--prompt-len P] [--out F.json]
//   openlora-cli roofline [--model DIR | --random-*] [--backend B] [--out F.json]
//   openlora-cli ceilings [--threads N] [--buffer-mib M] [--out F.json]
//   openlora-cli attention [--heads 15 --kv-heads 5 --head-dim 64 --layers 32] [--ctx 512,2048,4096]
//                         [--batch 1] [--block-size 16] [--kv-cache-dtype D] [--rounds R] [--out F.json]
//   openlora-cli write-random --random-llama3-8b | --random-shape ... [--vocab V] [--tied] --out-dir DIR
//                         (a BF16 model folder of the random weights, for load and memory checks)
//
// --backend: cpu | cuda | auto (chooseBackend, backend.h). Common: --threads N (CPU threads).
// Output: one human-readable table on stdout; --out writes the same figures as JSON.
// Exit status: 0 ok / PASS, 1 FAIL, 2 usage or runtime error, 3 backend not available (SKIP).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "attention_bench.h"
#include "../cpu/ceilings.h"
#include "../cpu/gemm_packed.h"
#include "backend.h"
#include "json.h"
#include "files.h"
#include "kv_cache.h"
#include "model.h"
#include "peft.h"
#include "random_weights.h"
#include "write_model.h"

#ifdef OPENLORA_WITH_CUDA
#include "cuda_bench.h"
#endif

namespace openlora::cli {
namespace {

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
  std::string cmd;
  std::multimap<std::string, std::string> kv;
  bool has(const std::string& k) const { return kv.count(k) > 0; }
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  std::vector<std::string> all(const std::string& k) const {
    std::vector<std::string> out;
    for (auto [it, end] = kv.equal_range(k); it != end; ++it) out.push_back(it->second);
    return out;
  }
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: openlora-cli <logits|check|crosscheck|bench|roofline|ceilings|attention|write-random> [options]\n"
    "  model:    --model DIR | --random-llama3-8b | --random-shape hidden,layers,heads,kvheads,inter\n"
    "            [--vocab V] [--layers N (override)] [--seed S] [--tied (lm_head = embed_tokens)]\n"
    "  common:   --backend cpu|cuda|auto (cpu)  --threads N (all cores)  --quantization none|int8|int4  --out FILE.json\n"
    "            --activation-dtype float32|bfloat16 (float32; EngineOptions.activationDtype)\n"
    "  logits:   --prompt-ids 1,2,3 [--adapter DIR:WEIGHT ...]\n"
    "  check:    --reference reference.json [--adapters DIR] [--tol T (1e-3 fp32, 0.2 bf16)]\n"
    "  crosscheck: [--tokens 8] [--tol 2e-2 relative]\n"
    "  bench:    [--batch 1,16,64,128] [--adapters 0,16,128] [--rank 16 | --ranks 8,16,32,64] [--steps 16]\n"
    "            [--prompt-len 16] [--kv-cache-dtype float32|bfloat16] [--rounds R (best of R interleaved)]\n"
    "  ceilings: [--buffer-mib 512] (read bandwidth 1 / N threads, FMA, BF16-dot and AMX peaks)\n"
    "  attention: [--heads 15] [--kv-heads 5] [--head-dim 64] [--layers 32] [--ctx 512,2048,4096] [--batch 1]\n"
    "            [--block-size 16] [--kv-cache-dtype float32|bfloat16] [--rounds 20] (decode attention alone)\n"
    "  write-random: --out-dir DIR (config.json + BF16 model.safetensors of the random model)\n";

Args parseArgs(int argc, char** argv) {
  if (argc < 2) throw UsageError("no subcommand");
  Args a;
  a.cmd = argv[1];
  for (int i = 2; i < argc; i++) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) throw UsageError("unexpected argument " + k);
    k = k.substr(2);
    const bool flag = i + 1 >= argc || std::strncmp(argv[i + 1], "--", 2) == 0;
    a.kv.emplace(k, flag ? "1" : argv[++i]);
  }
  return a;
}

std::vector<int> parseInts(const std::string& s, const char* what) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      out.push_back(std::stoi(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UsageError(std::string(what) + ": \"" + item + "\" is not an integer");
    }
  }
  return out;
}

int threadsOf(const Args& a) {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  return a.has("threads") ? std::max(1, std::stoi(a.get("threads"))) : hw;
}

double nowSec() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/** CPU time of the whole process (every thread), seconds: what a step cost, whatever it waited for a core. */
double cpuSec() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

/** A tiny JSON writer for the --out files (objects of numbers, strings, arrays, objects). */
struct JsonOut {
  std::string s;
  static std::string str(const std::string& v) {
    std::string o = "\"";
    for (char c : v) {
      if (c == '"' || c == '\\') o += '\\';
      if (c == '\n') { o += "\\n"; continue; }
      o += c;
    }
    return o + "\"";
  }
  static std::string num(double v) {
    if (!std::isfinite(v)) return "null";
    char b[64];
    std::snprintf(b, sizeof b, "%.9g", v);
    return b;
  }
};

void writeOut(const Args& a, const std::string& json) {
  if (!a.has("out")) return;
  std::ofstream f(a.get("out"));
  if (!f) throw std::runtime_error(a.get("out") + ": cannot write");
  f << json << "\n";
  std::printf("wrote %s\n", a.get("out").c_str());
}

// ---------------------------------------------------------------------------------------------
// Models: a folder, or seeded random weights of a given shape

struct ModelSource {
  std::string label;  // for logs: the folder, or "random HxLx..."
  std::shared_ptr<const Model> model;
  ModelConfig config;
  bool random = false;
  uint64_t seed = 0;
};

/** Llama-3-8B's shape (meta-llama/Meta-Llama-3-8B config.json), or --random-shape's. */
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

/** This process's resident set now and its peak so far (/proc/self/status VmRSS, VmHWM; 0 elsewhere). */
struct ResidentMemory {
  int64_t rssBytes = 0, hwmBytes = 0;
};
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

/** Random rank-r adapter on every target module (LoRA A std 1/sqrt(in), B std 0.02), scaling 2. */
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

/** Last-position logits of one prompt with an adapter set, on a private KV pool. */
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

// ---------------------------------------------------------------------------------------------
// logits

int cmdLogits(const Args& a) {
  ModelSource src = loadSource(a);
  std::string reason;
  auto be = backendFor(a, src, &reason);
  std::vector<int32_t> ids;
  for (int v : parseInts(a.get("prompt-ids"), "--prompt-ids")) ids.push_back(v);
  if (ids.empty()) throw UsageError("--prompt-ids is required (e.g. 1,2,3)");
  for (int32_t t : ids) {
    if (t < 0 || t >= src.config.vocabSize) throw UsageError("--prompt-ids: " + std::to_string(t) + " out of vocab");
  }
  std::vector<ActiveLora> loras;
  int slot = 0, maxRank = 1;
  for (const std::string& spec : a.all("adapter")) {
    const size_t colon = spec.rfind(':');
    const std::string dir = colon == std::string::npos ? spec : spec.substr(0, colon);
    const float w = colon == std::string::npos ? 1.0f : std::stof(spec.substr(colon + 1));
    PeftAdapter p = loadPeftDir(dir, src.config, src.model->textLayout(), 256);
    maxRank = std::max(maxRank, maxRankOf(*p.adapter));
    loras.push_back(ActiveLora{slot++, w, p.adapter});
  }
  be->reserveAdapters(std::max(1, slot), maxRank);
  for (const ActiveLora& al : loras) be->uploadAdapter(al.slot, *al.adapter);
  be->waitAdapters();
  const double t0 = nowSec();
  std::vector<float> lg = lastLogits(*be, src.config, ids, loras);
  const double secs = nowSec() - t0;
  const int V = src.config.vocabSize;
  int am = 0;
  double mx = -INFINITY, mn = INFINITY, sum = 0;
  for (int i = 0; i < V; i++) {
    if (lg[size_t(i)] > lg[size_t(am)]) am = i;
    mx = std::max(mx, double(lg[size_t(i)]));
    mn = std::min(mn, double(lg[size_t(i)]));
    sum += lg[size_t(i)];
  }
  double lse = 0;
  for (int i = 0; i < V; i++) lse += std::exp(double(lg[size_t(i)]) - mx);
  lse = mx + std::log(lse);
  std::printf("model %s\nbackend %s (%s)\nprompt %zu tokens, adapters %zu, forward %.3f s\n", src.label.c_str(), be->name(),
              reason.c_str(), ids.size(), loras.size(), secs);
  std::printf("last-position logits: argmax %d, max %.6f, min %.6f, mean %.6f, logsumexp %.6f\n", am, mx, mn, sum / V, lse);
  std::string j = "{\"model\": " + JsonOut::str(src.label) + ", \"backend\": " + JsonOut::str(be->name()) +
                  ", \"argmax\": " + std::to_string(am) + ", \"logsumexp\": " + JsonOut::num(lse) + ", \"last_logits\": [";
  for (int i = 0; i < V; i++) j += (i ? "," : "") + JsonOut::num(lg[size_t(i)]);
  writeOut(a, j + "]}");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// check: the demo model's reference prompts, every config of reference.json

int cmdCheck(const Args& a) {
  if (!a.has("model") || !a.has("reference")) throw UsageError("check needs --model DIR --reference reference.json");
  ModelSource src = loadSource(a);
  std::string reason;
  auto be = backendFor(a, src, &reason);
  const JsonValue ref = parseJson(readFile(a.get("reference")), a.get("reference"));
  std::string adaptersDir = a.get("adapters");
  if (adaptersDir.empty()) {
    // examples/models/X -> examples/adapters; a ../shared layout has X-adapters beside X.
    const std::string m = a.get("model");
    adaptersDir = m + "/../../adapters";
    std::ifstream probe(adaptersDir + "/shout/adapter_config.json");
    if (!probe) adaptersDir = m + "/../" + src.label.substr(src.label.find_last_of('/') + 1) + "-adapters";
  }
  const bool bf16 = std::string(be->name()) != "cpu";
  const double tol = a.has("tol") ? std::stod(a.get("tol")) : (bf16 ? 0.2 : 1e-3);
  std::map<std::string, PeftAdapter> adapters;
  int nextSlot = 0;
  std::map<std::string, int> slotOf;
  const JsonValue* configs = ref.find("configs");
  const JsonValue* prompts = ref.find("prompts");
  if (!configs || !configs->isObject() || !prompts || !prompts->isArray()) throw std::runtime_error("reference: configs / prompts missing");
  // Every adapter the configs name, loaded first so the backend's slot pools fit them.
  int maxRank = 1;
  for (const auto& [name, members] : configs->members()) {
    for (const JsonValue& mem : members.items()) {
      const std::string ad = mem.find("adapter")->asString();
      if (adapters.count(ad)) continue;
      adapters[ad] = loadPeftDir(adaptersDir + "/" + ad, src.config, src.model->textLayout(), 256);
      slotOf[ad] = nextSlot++;
      maxRank = std::max(maxRank, maxRankOf(*adapters[ad].adapter));
    }
  }
  be->reserveAdapters(std::max(1, nextSlot), maxRank);
  for (const auto& [ad, slot] : slotOf) be->uploadAdapter(slot, *adapters[ad].adapter);
  std::printf("model %s\nadapters %s\nbackend %s (%s)\ntolerance %g (max abs logit error, last position)\n", src.label.c_str(),
              adaptersDir.c_str(), be->name(), reason.c_str(), tol);
  std::printf("%-26s %8s %12s %6s\n", "config", "prompts", "max_abs_err", "");
  bool allPass = true;
  std::string j = "{\"backend\": " + JsonOut::str(be->name()) + ", \"tolerance\": " + JsonOut::num(tol) + ", \"configs\": {";
  bool firstCfg = true;
  for (const auto& [name, members] : configs->members()) {
    std::vector<ActiveLora> loras;
    for (const JsonValue& mem : members.items()) {
      const std::string ad = mem.find("adapter")->asString();
      loras.push_back(ActiveLora{slotOf[ad], float(mem.find("weight")->asNumber()), adapters[ad].adapter});
    }
    be->waitAdapters();
    double maxErr = 0;
    int n = 0;
    for (const JsonValue& p : prompts->items()) {
      const JsonValue* res = p.find("results") ? p.find("results")->find(name) : nullptr;
      if (!res) continue;
      std::vector<int32_t> ids;
      for (const JsonValue& t : p.find("input_ids")->items()) ids.push_back(int32_t(t.asNumber()));
      std::vector<float> lg = lastLogits(*be, src.config, ids, loras);
      const auto& want = res->find("last_logits")->items();
      if (want.size() != lg.size()) throw std::runtime_error("reference: last_logits has " + std::to_string(want.size()) + " values, vocab is " + std::to_string(lg.size()));
      for (size_t i = 0; i < lg.size(); i++) {
        const double e = std::fabs(double(lg[i]) - want[i].asNumber());
        maxErr = std::isnan(e) ? INFINITY : std::max(maxErr, e);
      }
      n++;
    }
    const bool pass = n > 0 && maxErr <= tol;
    allPass = allPass && pass;
    std::printf("%-26s %8d %12.3e %6s\n", name.c_str(), n, maxErr, pass ? "PASS" : "FAIL");
    j += std::string(firstCfg ? "" : ", ") + JsonOut::str(name) + ": {\"prompts\": " + std::to_string(n) +
         ", \"max_abs_err\": " + JsonOut::num(maxErr) + ", \"pass\": " + (pass ? "true" : "false") + "}";
    firstCfg = false;
  }
  std::printf("check %s\n", allPass ? "PASS" : "FAIL");
  writeOut(a, j + "}, \"pass\": " + (allPass ? "true" : "false") + "}");
  return allPass ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// crosscheck: a random-weight model on --backend against the CPU float32 forward of the same
// (bf16-valued) weights; relative L2 error of the last-position logits, with and without adapters

int cmdCrosscheck(const Args& a) {
  ModelSource src = loadSource(a);
  std::string reason;
  auto be = backendFor(a, src, &reason);
  auto ref = makeCpuForward(src.model, threadsOf(a));
  const double tol = std::stod(a.get("tol", "2e-2"));
  const int T = std::stoi(a.get("tokens", "8"));
  std::vector<int32_t> ids;
  for (int i = 0; i < T; i++) ids.push_back(int32_t(splitmix64(src.seed + uint64_t(i)) % uint64_t(src.config.vocabSize)));
  auto ad = randomAdapter(src.config, std::stoi(a.get("rank", "16")), src.seed + 7);
  be->reserveAdapters(1, maxRankOf(*ad));
  be->uploadAdapter(0, *ad);
  be->waitAdapters();
  std::printf("model %s\nbackend %s (%s) vs cpu float32, %d prompt tokens, tolerance %g (relative L2)\n", src.label.c_str(),
              be->name(), reason.c_str(), T, tol);
  bool allPass = true;
  std::string j = "{\"model\": " + JsonOut::str(src.label) + ", \"backend\": " + JsonOut::str(be->name()) + ", \"cases\": [";
  for (int withAdapter = 0; withAdapter < 2; withAdapter++) {
    std::vector<ActiveLora> loras;
    if (withAdapter) loras.push_back(ActiveLora{0, 1.0f, ad});
    const std::vector<float> want = lastLogits(*ref, src.config, ids, loras);
    const std::vector<float> got = lastLogits(*be, src.config, ids, loras);
    double num = 0, den = 0, maxAbs = 0;
    for (size_t i = 0; i < want.size(); i++) {
      const double d = double(got[i]) - want[i];
      num += d * d;
      den += double(want[i]) * want[i];
      maxAbs = std::isnan(d) ? INFINITY : std::max(maxAbs, std::fabs(d));
    }
    const double rel = den > 0 ? std::sqrt(num / den) : INFINITY;
    const bool pass = std::isfinite(rel) && rel <= tol;
    allPass = allPass && pass;
    std::printf("%-12s rel_l2 %.3e max_abs %.3e %s\n", withAdapter ? "adapter r16" : "base", rel, maxAbs, pass ? "PASS" : "FAIL");
    j += std::string(withAdapter ? ", " : "") + "{\"case\": " + JsonOut::str(withAdapter ? "adapter" : "base") +
         ", \"rel_l2\": " + JsonOut::num(rel) + ", \"max_abs\": " + JsonOut::num(maxAbs) + ", \"pass\": " + (pass ? "true" : "false") + "}";
  }
  std::printf("crosscheck %s\n", allPass ? "PASS" : "FAIL");
  writeOut(a, j + "], \"pass\": " + (allPass ? "true" : "false") + "}");
  return allPass ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// roofline: copy bandwidth (host memcpy on cpu, device-to-device on cuda)

struct Roofline {
  double copyGBps = 0;  // bytes read + bytes written per second
  std::string what;
};

Roofline measureCopy(const std::string& backend) {
  Roofline r;
#ifdef OPENLORA_WITH_CUDA
  if (backend == "cuda") {
    char err[256] = {0};
    double gbps = 0;
    if (openlora_cli_cuda_copy_bandwidth(size_t(2) << 30, 20, &gbps, err, sizeof err) != 0) throw Unavailable(err);
    r.copyGBps = gbps;
    r.what = "device-to-device cudaMemcpy, 2 GiB, median of 20";
    return r;
  }
#endif
  if (backend == "cuda") throw Unavailable("this build has no CUDA");
  const size_t n = size_t(256) << 20;  // well past the caches
  std::vector<char> src(n), dst(n);
  for (size_t i = 0; i < n; i += 4096) src[i] = char(splitmix64(i));
  std::memcpy(dst.data(), src.data(), n);  // touch both
  std::vector<double> t;
  for (int i = 0; i < 5; i++) {
    const double t0 = nowSec();
    std::memcpy(dst.data(), src.data(), n);
    t.push_back(nowSec() - t0);
  }
  std::sort(t.begin(), t.end());
  r.copyGBps = 2.0 * double(n) / t[t.size() / 2] / 1e9;
  r.what = "host memcpy, 256 MiB, median of 5, one thread";
  return r;
}

int cmdRoofline(const Args& a) {
  const std::string backend = a.get("backend", "cpu");
  Roofline r = measureCopy(backend);
  std::printf("copy bandwidth %.1f GB/s (%s)\n", r.copyGBps, r.what.c_str());
  std::string j = "{\"backend\": " + JsonOut::str(backend) + ", \"copy_GBps\": " + JsonOut::num(r.copyGBps) + ", \"how\": " + JsonOut::str(r.what);
  if (a.has("model") || a.has("random-shape") || a.has("random-llama3-8b")) {
    // Bytes only; no weights needed: fp32 on cpu (what Model stores), bf16 on the device.
    ModelSource src;
    if (a.has("model")) src.config = Model::load(a.get("model"))->config(); else src.config = randomConfig(a);
    const ModelConfig& c = src.config;
    const int64_t perLayer = int64_t(c.hiddenSize) * (c.qDim() + 2 * c.kvDim()) + int64_t(c.qDim()) * c.hiddenSize +
                             3 * int64_t(c.hiddenSize) * c.intermediateSize;
    const int64_t params = perLayer * c.numHiddenLayers + int64_t(c.vocabSize) * c.hiddenSize;
    const int64_t bytes = params * (backend == "cuda" ? 2 : 4);
    const double stepMs = double(bytes) / (r.copyGBps * 1e9) * 1e3;
    std::printf("weights %.3f GB (%s) -> one decode step >= %.3f ms (weights / copy bandwidth)\n", bytes / 1e9,
                backend == "cuda" ? "bf16" : "fp32", stepMs);
    j += ", \"weight_bytes\": " + JsonOut::num(double(bytes)) + ", \"step_ms_floor\": " + JsonOut::num(stepMs);
  }
  writeOut(a, j + "}");
  return 0;
}

/** ceilings: the CPU's measured read bandwidth and compute peaks (cpu/ceilings.h) as JSON. */
int cmdCeilings(const Args& a) {
  const cpu::Ceilings c = cpu::measureCeilings(threadsOf(a), std::stoi(a.get("buffer-mib", "512")));
  const std::string j = c.toJson();
  std::printf("%s\n", j.c_str());
  writeOut(a, j);
  return 0;
}

int cmdAttention(const Args& a) {
  AttentionBenchOptions o;
  o.heads = std::stoi(a.get("heads", "15"));
  o.kvHeads = std::stoi(a.get("kv-heads", "5"));
  o.headDim = std::stoi(a.get("head-dim", "64"));
  o.layers = std::stoi(a.get("layers", "32"));
  o.batch = std::stoi(a.get("batch", "1"));
  o.blockSize = std::stoi(a.get("block-size", "16"));
  o.rounds = std::stoi(a.get("rounds", "20"));
  o.contexts = parseInts(a.get("ctx", "512,2048,4096"), "--ctx");
  o.threads = threadsOf(a);
  const std::string dt = a.get("kv-cache-dtype", "float32");
  if (dt != "float32" && dt != "bfloat16") throw UsageError("--kv-cache-dtype must be float32 or bfloat16");
  o.kvDtype = dt == "bfloat16" ? DType::BF16 : DType::F32;
  if (o.layers < 1 || o.batch < 1 || o.blockSize < 1 || o.rounds < 1 || o.contexts.empty()) throw UsageError("attention: sizes must be >= 1");
  for (int c : o.contexts)
    if (c < 1) throw UsageError("--ctx values must be >= 1");
  const std::string j = benchAttention(o);
  std::printf("%s\n", j.c_str());
  writeOut(a, j);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// bench: decode and prefill tokens/s over batch x adapters, adapter upload time, roofline ratio

int cmdBench(const Args& a) {
  const std::string backend = a.get("backend", "cpu");
#ifdef OPENLORA_WITH_CUDA
  if (backend == "cuda" && a.has("random-llama3-8b")) {
    // Weights generated on the device from the seed (what the CUDA forward will upload from).
    ModelConfig c = randomConfig(a);
    std::vector<int64_t> numel;
    std::vector<uint64_t> streams;
    std::vector<float> scale, offset;
    auto add = [&](const std::string& name, int64_t n) {
      float s, o;
      initOf(name, &s, &o);
      numel.push_back(n), streams.push_back(streamOf(name)), scale.push_back(s), offset.push_back(o);
    };
    const int64_t H = c.hiddenSize, I = c.intermediateSize, Q = c.qDim(), KV = c.kvDim(), V = c.vocabSize;
    const hf::TextLayout& L = hf::kCausalLM;  // Llama-3-8B's tensor names
    add(hf::embedTokens(L), V * H);
    for (int l = 0; l < c.numHiddenLayers; l++) {
      using M = LoraModule;
      add(hf::inputNorm(L, l), H), add(hf::linearWeight(L, l, M::Q), Q * H), add(hf::linearWeight(L, l, M::K), KV * H);
      add(hf::linearWeight(L, l, M::V), KV * H), add(hf::linearWeight(L, l, M::O), H * Q), add(hf::postAttentionNorm(L, l), H);
      add(hf::linearWeight(L, l, M::Gate), I * H), add(hf::linearWeight(L, l, M::Up), I * H), add(hf::linearWeight(L, l, M::Down), H * I);
    }
    add(hf::finalNorm(L), H), add(hf::lmHead(L), V * H);
    char err[256] = {0};
    double ms = 0;
    size_t bytes = 0;
    if (openlora_cli_cuda_random_weights(1234, int(numel.size()), numel.data(), streams.data(), scale.data(), offset.data(), &ms,
                                         &bytes, err, sizeof err) != 0) {
      throw Unavailable(err);
    }
    std::printf("generated Llama-3-8B-shape bf16 weights on the device: %.2f GB in %.1f ms\n", bytes / 1e9, ms);
    const int rank = std::stoi(a.get("rank", "16"));
    int64_t adParams = 0;
    for (int m = 0; m < kNumLoraModules; m++) adParams += int64_t(rank) * (loraModuleIn(c, LoraModule(m)) + loraModuleOut(c, LoraModule(m)));
    adParams *= c.numHiddenLayers;
    double msEach = 0, gbps = 0;
    if (openlora_cli_cuda_upload_timing(size_t(adParams) * 2, 16, &msEach, &gbps, err, sizeof err) != 0) throw Unavailable(err);
    std::printf("adapter upload (rank %d, all 7 modules, %.1f MB bf16, pinned -> device on its own stream): %.3f ms each, %.1f GB/s\n",
                rank, adParams * 2 / 1e6, msEach, gbps);
    std::string j = "{\"backend\": \"cuda\", \"device_weight_gen_ms\": " + JsonOut::num(ms) + ", \"weight_bytes\": " + JsonOut::num(double(bytes)) +
                    ", \"adapter_upload_ms\": " + JsonOut::num(msEach) + ", \"adapter_upload_GBps\": " + JsonOut::num(gbps);
    // The decode/prefill table below (CudaForward over host-generated weights) overwrites --out.
    writeOut(a, j + "}");
  }
#endif
  ModelSource src = loadSource(a);
  std::string reason;
  auto be = backendFor(a, src, &reason);
  const ModelConfig& c = src.config;
  const std::vector<int> batches = parseInts(a.get("batch", "1,16,64,128"), "--batch");
  const std::vector<int> adapterCounts = parseInts(a.get("adapters", "0,16,128"), "--adapters");
  // --ranks 8,16,32,64: adapter i has rank ranks[i % n] (mixed ranks, as S-LoRA's workloads); else --rank.
  const std::vector<int> ranks = a.has("ranks") ? parseInts(a.get("ranks"), "--ranks") : std::vector<int>{std::stoi(a.get("rank", "16"))};
  if (ranks.empty() || *std::min_element(ranks.begin(), ranks.end()) < 1) throw UsageError("--ranks wants positive integers");
  const int rank = *std::max_element(ranks.begin(), ranks.end());
  const int steps = std::stoi(a.get("steps", "16"));
  const int P = std::stoi(a.get("prompt-len", "16"));
  DType kvDtype = DType::F32;
  const std::string kvDtypeName = a.get("kv-cache-dtype", "float32");
  if (!parseKvCacheDtype(kvDtypeName, &kvDtype))
    throw std::runtime_error("--kv-cache-dtype must be float32 or bfloat16, got \"" + kvDtypeName + "\"");
  const int maxAd = adapterCounts.empty() ? 0 : *std::max_element(adapterCounts.begin(), adapterCounts.end());

  // Adapters: generated on the host (the host cache's role), then uploaded to slots.
  std::vector<std::shared_ptr<const LoraAdapter>> ads;
  double genS = 0, upS = 0;
  be->reserveAdapters(std::max(1, maxAd), rank);
  for (int i = 0; i < maxAd; i++) {
    double t0 = nowSec();
    ads.push_back(randomAdapter(c, ranks[size_t(i) % ranks.size()], src.seed + 100 + uint64_t(i)));
    genS += nowSec() - t0;
    t0 = nowSec();
    be->uploadAdapter(i, *ads.back());
    be->waitAdapters();
    upS += nowSec() - t0;
  }
  const int64_t adBytes = ads.empty() ? 0 : adapterBytes(*ads[0]);
  const ResidentMemory mem = residentMemory();
  Roofline roof = measureCopy(be->name());
  // The CPU's measured read bandwidth (ceilings.h): a decode step reads the weights, each distinct
  // adapter and every row's KV once, so bytes / time over it is the step's roofline fraction.
  cpu::Ceilings ceil;
  if (std::string(be->name()) == "cpu") {
    ceil = cpu::measureCeilings(threadsOf(a), 256, 20);
    std::printf("ceilings %s\n", ceil.toJson().c_str());
  }
  const int64_t kvBytesPerPos = int64_t(c.numHiddenLayers) * 2 * c.kvDim() * (kvDtype == DType::BF16 ? 2 : 4);
  const int64_t wBytes = be->weightBytes();
  std::printf("model %s\nbackend %s (%s), threads %d, gemm %s\n", src.label.c_str(), be->name(), reason.c_str(), threadsOf(a),
              cpu::gemmPackedKernelName());
  std::printf("kv cache %s\n", kvDtypeName.c_str());
  std::printf("resident after load: %.1f MB (peak %.1f MB); model storage %.1f MB (%s)\n", mem.rssBytes / 1e6, mem.hwmBytes / 1e6,
              src.model->residentBytes() / 1e6, quantizationName(src.model->quantization()));
  std::printf("weights %.1f MB; copy bandwidth %.1f GB/s (%s)\n", wBytes / 1e6, roof.copyGBps, roof.what.c_str());
  if (maxAd) {
    std::printf("adapters: %d x rank %s (%.2f MB the first): host build %.2f ms each, upload %.3f ms each (%s)\n", maxAd,
                a.get("ranks", std::to_string(rank)).c_str(), adBytes / 1e6, genS * 1e3 / maxAd, upS * 1e3 / maxAd,
                std::string(be->name()) == "cpu" ? "cpu: no copy, slots point at host memory" : "pinned -> device");
  }
  std::printf("%6s %8s %12s %12s %14s %10s %10s %14s\n", "batch", "adapters", "prefill_t/s", "decode_t/s", "roofline_t/s", "ratio",
              "read_frac", "decode_cpu_t/s");
  std::string rows;
  const int bs = 16;
  // NOTE(why): the first (batch, adapters) cell runs once untimed, so thread start-up, page
  // faults and module load stay out of the table.
  std::vector<std::pair<int, int>> cells;
  if (!batches.empty() && !adapterCounts.empty()) cells.push_back({batches[0], adapterCounts[0]});
  for (int B : batches) {
    for (int A : adapterCounts) cells.push_back({B, A});
  }
  // --rounds R: the cell list runs R times, interleaved, and each cell reports its best round
  // (fastest prefill and decode): on a shared machine the other tenants' load only ever slows a
  // round, so the best of interleaved rounds compares cells under the same conditions.
  const int rounds = std::max(1, std::stoi(a.get("rounds", "1")));
  std::vector<double> bestPrefill(cells.size(), 0), bestDecode(cells.size(), 0), bestDecodeCpu(cells.size(), 0);
  for (int round = 0; round < rounds; round++)
  for (size_t cell = 0; cell < cells.size(); cell++) {
    const int B = cells[cell].first, A = cells[cell].second;
    {
      const int blocksPerSeq = (P + steps + 2 + bs - 1) / bs;
      KvCache cache(c.numHiddenLayers, c.numKeyValueHeads, c.headDim, B * blocksPerSeq, bs, false, kvDtype);
      be->attachKv(cache);
      struct Detach {  // the backend's storage for this pool goes with it
        ForwardBackend& b;
        KvCache& c;
        ~Detach() { b.detachKv(c); }
      } detach{*be, cache};
      std::vector<std::unique_ptr<SequenceKv>> kvs;
      std::vector<std::vector<ActiveLora>> loras(static_cast<size_t>(B));
      std::vector<std::vector<int32_t>> toks(static_cast<size_t>(B));
      for (int s = 0; s < B; s++) {
        kvs.push_back(std::make_unique<SequenceKv>(&cache, c.maxPositionEmbeddings));
        if (!kvs.back()->grow(P + steps + 1)) throw std::logic_error("bench KV pool too small");
        if (A > 0) loras[size_t(s)].push_back(ActiveLora{s % A, 1.0f, ads[size_t(s % A)]});
        for (int i = 0; i < P + steps + 1; i++) toks[size_t(s)].push_back(int32_t(splitmix64(uint64_t(s) * 7919 + uint64_t(i)) % uint64_t(c.vocabSize)));
      }
      std::vector<float> logits;
      auto stepOf = [&](int start, int n) {
        std::vector<BatchEntry> batch(static_cast<size_t>(B));
        for (int s = 0; s < B; s++) {
          BatchEntry& e = batch[size_t(s)];
          e.tokens = toks[size_t(s)].data() + start;
          e.numTokens = n;
          e.startPos = start;
          e.kv = kvs[size_t(s)].get();
          e.loras = &loras[size_t(s)];
        }
        be->forward(batch, &logits);
      };
      double t0 = nowSec();
      stepOf(0, P);  // prefill: every sequence's prompt in one step
      const double prefill = double(B) * P / (nowSec() - t0);
      stepOf(P, 1);  // warm-up decode
      t0 = nowSec();
      const double c0 = cpuSec();
      for (int i = 0; i < steps; i++) stepOf(P + 1 + i, 1);
      bestPrefill[cell] = std::max(bestPrefill[cell], prefill);
      bestDecode[cell] = std::max(bestDecode[cell], double(B) * steps / (nowSec() - t0));
      // NOTE(why): on a shared machine the wall clock counts the time the threads waited for a
      // core; tokens per CPU-second x threads does not (on an idle machine the two agree).
      bestDecodeCpu[cell] = std::max(bestDecodeCpu[cell], double(B) * steps * threadsOf(a) / (cpuSec() - c0));
      if (round + 1 < rounds) continue;
      const double decode = bestDecode[cell];
      // Roofline: one decode step must stream the base weights and each distinct adapter once.
      const int distinct = std::min(A, B);
      const double stepBytes = double(wBytes) + double(distinct) * double(adBytes);
      const double roofTps = double(B) / (stepBytes / (roof.copyGBps * 1e9));
      // Bytes actually read per decode step: weights, the distinct adapters (their own sizes),
      // and each row's KV over its mean context (P + 1 + steps / 2 positions).
      double adRead = 0;
      for (int i = 0; i < distinct; i++) adRead += double(adapterBytes(*ads[size_t(i)]));
      const double readBytes = double(wBytes) + adRead + double(B) * double(kvBytesPerPos) * (P + 1 + steps / 2.0);
      const double readFrac = ceil.readGBpsN > 0 ? readBytes * (decode / B) / (ceil.readGBpsN * 1e9) : 0;
      if (cell == 0) continue;  // the warm-up
      std::printf("%6d %8d %12.1f %12.1f %14.1f %10.3f %10.3f %14.1f\n", B, A, bestPrefill[cell], decode, roofTps, decode / roofTps, readFrac,
                  bestDecodeCpu[cell]);
      std::fflush(stdout);
      rows += std::string(rows.empty() ? "" : ", ") + "{\"batch\": " + std::to_string(B) + ", \"adapters\": " + std::to_string(A) +
              ", \"prefill_tps\": " + JsonOut::num(bestPrefill[cell]) + ", \"decode_tps\": " + JsonOut::num(decode) +
              ", \"roofline_tps\": " + JsonOut::num(roofTps) + ", \"roofline_ratio\": " + JsonOut::num(decode / roofTps) +
              ", \"bytes_per_step\": " + JsonOut::num(readBytes) + ", \"read_bandwidth_fraction\": " + JsonOut::num(readFrac) +
              ", \"decode_tps_cpu_time\": " + JsonOut::num(bestDecodeCpu[cell]) + "}";
    }
  }
  writeOut(a, "{\"model\": " + JsonOut::str(src.label) + ", \"backend\": " + JsonOut::str(be->name()) + ", \"reason\": " +
                  JsonOut::str(reason) + ", \"threads\": " + std::to_string(threadsOf(a)) + ", \"rank\": " + std::to_string(rank) +
                  ", \"steps\": " + std::to_string(steps) + ", \"rounds\": " + std::to_string(rounds) + ", \"kv_cache_dtype\": " + JsonOut::str(kvDtypeName) + ", \"prompt_len\": " + std::to_string(P) +
                  ", \"weight_bytes\": " + JsonOut::num(double(wBytes)) + ", \"adapter_bytes\": " + JsonOut::num(double(adBytes)) +
                  ", \"adapter_build_ms\": " + JsonOut::num(maxAd ? genS * 1e3 / maxAd : 0) +
                  ", \"adapter_upload_ms\": " + JsonOut::num(maxAd ? upS * 1e3 / maxAd : 0) +
                  ", \"copy_GBps\": " + JsonOut::num(roof.copyGBps) + ", \"ranks\": \"" + a.get("ranks", std::to_string(rank)) +
                  "\", \"tied\": " + (c.tieWordEmbeddings ? "true" : "false") +
                  (ceil.threads > 0 && !ceil.features.empty() ? ", \"ceilings\": " + ceil.toJson() : std::string()) +
                  ", \"quantization\": " + JsonOut::str(quantizationName(src.model->quantization())) +
                  ", \"model_bytes\": " + JsonOut::num(double(src.model->residentBytes())) +
                  ", \"rss_after_load_bytes\": " + JsonOut::num(double(mem.rssBytes)) +
                  ", \"peak_rss_after_load_bytes\": " + JsonOut::num(double(mem.hwmBytes)) + ", \"rows\": [" + rows + "]}");
  return 0;
}

}  // namespace
}  // namespace openlora::cli

int main(int argc, char** argv) {
  using namespace openlora::cli;
  try {
    Args a = parseArgs(argc, argv);
    if (a.cmd == "logits") return cmdLogits(a);
    if (a.cmd == "check") return cmdCheck(a);
    if (a.cmd == "crosscheck") return cmdCrosscheck(a);
    if (a.cmd == "bench") return cmdBench(a);
    if (a.cmd == "roofline") return cmdRoofline(a);
    if (a.cmd == "ceilings") return cmdCeilings(a);
    if (a.cmd == "attention") return cmdAttention(a);
    if (a.cmd == "write-random") {
      if (!a.has("out-dir") || (!a.has("random-llama3-8b") && !a.has("random-shape"))) {
        throw UsageError("write-random needs --random-llama3-8b | --random-shape ... and --out-dir DIR");
      }
      writeRandomModel(randomConfig(a), std::stoull(a.get("seed", "1234")), a.get("out-dir"), threadsOf(a));
      return 0;
    }
    if (a.cmd == "help" || a.cmd == "--help" || a.cmd == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    throw UsageError("unknown subcommand " + a.cmd);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "openlora-cli: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const Unavailable& e) {
    std::fprintf(stderr, "openlora-cli: SKIP: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "openlora-cli: error: %s\n", e.what());
    return 2;
  }
}
