// See bench_commands.h.
#include "bench_commands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/ceilings.h"
#include "../cpu/gemm_packed.h"
#include "attention_bench.h"
#include "kv_cache.h"
#include "model_source.h"
#include "random_weights.h"

#ifdef OPENLORA_WITH_CUDA
#include "cuda_bench.h"
#endif

namespace openlora::cli {

// ---------------------------------------------------------------------------------------------
// roofline: copy bandwidth (host memcpy on cpu, device-to-device on cuda)

namespace {

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

}  // namespace

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

}  // namespace openlora::cli
