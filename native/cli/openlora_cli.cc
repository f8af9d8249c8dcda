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
// This file: the usage, logits, check, crosscheck and main; the timing subcommands are in
// bench_commands.cc, the options in cli_args.h, the models and adapters in model_source.h.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_commands.h"
#include "cli_args.h"
#include "files.h"
#include "json.h"
#include "kv_cache.h"
#include "model_source.h"
#include "peft.h"
#include "random_weights.h"
#include "write_model.h"

namespace openlora::cli {
namespace {

// ---------------------------------------------------------------------------------------------
// Usage

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
    "  write-random: --out-dir DIR (config.json + BF16 model.safetensors of the random model)\n"
    "            [--bos-token-id N] [--eos-token-id N[,N...]] (default: Llama 3's at --vocab 128256, else 1 and 2)\n";

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
      const auto c = randomConfig(a);
      std::string bosEos = defaultBosEos(c.vocabSize);
      if (a.has("bos-token-id") || a.has("eos-token-id")) {
        const std::string eos = a.get("eos-token-id", "2");
        bosEos = "\"bos_token_id\": " + std::to_string(std::stoi(a.get("bos-token-id", "1"))) + ", \"eos_token_id\": " +
                 (eos.find(',') == std::string::npos ? std::to_string(std::stoi(eos)) : "[" + eos + "]");
      }
      writeRandomModel(c, std::stoull(a.get("seed", "1234")), a.get("out-dir"), threadsOf(a), bosEos);
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
