// The CPU forward, the reference every other backend is checked against. It follows HF
// modeling_llama.py (LlamaDecoderLayer) step by step, with the changes of modeling_qwen3.py,
// modeling_gemma2.py / modeling_gemma3.py and modeling_phi3.py where the config asks for them
// (config.h). See forward.h.
#include "forward.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <memory>

#include "../src/backend.h"
#include "ops.h"
#include "paged_attention.h"

namespace openlora {
namespace cpu {

namespace {

/**
 * One adapted projection of the whole batch: out = in W^T (+ bias) + sum_i w_i s_i B_i (A_i in)
 * per row, in that order of additions. The plan's LoRA terms are grouped first (ws.loraBatch:
 * adapter pairs, prefill rows as segments, decode rows gathered), then one sgmv adds them after
 * the product with W (which prefetches their A / B^T while it runs only with
 * OPENLORA_LORA_PREFETCH=1).
 * in [T, w.in], out [T, w.out] float32; bias [w.out] or empty.
 */
void projection(const StepPlan& plan, int layer, LoraModule m, const float* in, const Linear& w, const std::vector<float>& bias,
                float* out, int64_t T, ThreadPool& pool, Workspace& ws) {
  const int64_t inDim = w.in, outDim = w.out;
  const LoraSpan* begin = plan.spansBegin(layer, m);
  const LoraSpan* end = plan.spansEnd(layer, m);
  LoraBatch& lb = ws.loraBatch;
  lb.clear();
  for (const LoraSpan* sp = begin; sp != end; ++sp) {
    lb.add(sp->pair->a.data(), sp->pair->bT.data(), sp->pair->rank, sp->rowBegin, sp->rowEnd, sp->scale);
  }
  PrefetchRanges& pf = ws.loraPrefetch;
  pf.clear();
  // OPENLORA_LORA_PREFETCH=1: the base product prefetches the adapters (off by default).
  // NOTE(why): off by default: with many rows the base product is bound by arithmetic and the bus
  // idles, but the prefetched lines pass through the L2 that holds the product's own panels and
  // x, and most are evicted again before the sgmv reads them. On the 2-vCPU Zen 3 (512 KB L2) the
  // products with the prefetch took longer than the sgmv time it saved, in every module (16
  // streams x 16 adapters, decode steps alternating on / off in one run: 323 vs 303 ms a step;
  // bench/results/cpu-2026-12-07-lora-decode.json). sgmv streams the adapters itself (Pf).
  static const bool prefetch = [] {
    const char* v = std::getenv("OPENLORA_LORA_PREFETCH");
    return v && std::string(v) == "1";
  }();
  if (!lb.empty()) lb.finalize();
  if (!lb.empty() && prefetch) {
    for (const auto& g : lb.groups()) {
      pf.add(g.a.data, int64_t(g.rank) * inDim * int64_t(dtypeSize(g.a.dtype)));
      pf.add(g.bT.data, int64_t(g.rank) * outDim * int64_t(dtypeSize(g.bT.dtype)));
    }
  }
  linear(pool, in, inDim, w, out, outDim, T, false, lb.empty() || !prefetch ? nullptr : &pf, ws.bf16Activations);
  if (!bias.empty()) addBias(out, outDim, bias.data(), T, outDim);
  if (!lb.empty()) sgmv(pool, in, inDim, inDim, out, outDim, outDim, lb, ws.loraTmp);  // none: costs nothing
}

}  // namespace

void forward(const Model& model, const std::vector<BatchEntry>& batch, ThreadPool& pool, Workspace& ws,
             std::vector<float>* logits) {
  const ModelConfig& c = model.config();
  const std::vector<float>& invFreq = model.ropeInvFreq();
  const std::vector<float>& invFreqLocal = model.ropeLocalInvFreq();
  const std::vector<float>& invFreqLong = model.ropeLongInvFreq();
  const int64_t H = c.hiddenSize, I = c.intermediateSize, Q = c.qDim(), KV = c.kvDim(), V = c.vocabSize;
  ws.plan.build(batch, c);
  const StepPlan& plan = ws.plan;
  const int64_t T = plan.numRows(), R = plan.numLogitRows();
  const int32_t* pos = plan.positions().data();
  for (const BatchEntry& e : batch) e.kv->reserve(e.startPos + e.numTokens);
  ws.x.resize(size_t(T * H));
  ws.xn.resize(size_t(T * H));
  ws.q.resize(size_t(T * Q));
  ws.k.resize(size_t(T * KV));
  ws.v.resize(size_t(T * KV));
  ws.attn.resize(size_t(T * Q));
  ws.proj.resize(size_t(T * H));
  ws.gate.resize(size_t(T * I));
  ws.up.resize(size_t(T * I));

  // Embedding lookup.
  for (int64_t row = 0; row < T; row++) {
    float* xr = ws.x.data() + row * H;
    model.embedRow(plan.tokens()[size_t(row)], xr);
    if (c.embedScale != 1.0f) {  // Gemma: hidden_states * normalizer (sqrt(hidden_size), float32)
      for (int64_t j = 0; j < H; j++) xr[j] *= c.embedScale;
    }
  }
  std::vector<PagedAttentionRow> rows(static_cast<size_t>(T));  // [T] per-row block-table view

  for (int l = 0; l < c.numHiddenLayers; l++) {
    const LayerWeights& w = model.layer(l);
    // --- self-attention block: h = h + o_proj(attn(input_layernorm(h)))
    rmsNorm(ws.x.data(), w.inputNorm.data(), float(c.rmsNormEps), ws.xn.data(), T, H);
    projection(plan, l, LoraModule::Q, ws.xn.data(), w.wq, w.bq, ws.q.data(), T, pool, ws);
    projection(plan, l, LoraModule::K, ws.xn.data(), w.wk, w.bk, ws.k.data(), T, pool, ws);
    projection(plan, l, LoraModule::V, ws.xn.data(), w.wv, w.bv, ws.v.data(), T, pool, ws);
    if (c.qkNorm) {  // Qwen3Attention / Gemma3Attention: q_norm, k_norm over each head's head_dim, before RoPE
      rmsNorm(ws.q.data(), w.qNorm.data(), float(c.rmsNormEps), ws.q.data(), T * c.numAttentionHeads, c.headDim);
      rmsNorm(ws.k.data(), w.kNorm.data(), float(c.rmsNormEps), ws.k.data(), T * c.numKeyValueHeads, c.headDim);
    }
    // Per entry: the plan's RoPE table (longrope / dynamic NTK by the entry's length, or the whole
    // prompt's for a prefill chunk: BatchEntry::ropeLen); Gemma 3's local layers use their own
    // base with mscale 1.
    const bool local = c.layerLocalRope[size_t(l)];
    const float ms = local ? 1.0f : float(c.ropeScaling.attentionFactor);
    for (int s = 0; s < plan.numEntries(); s++) {
      const int64_t row = plan.entryRows()[size_t(s)], n = plan.entryRows()[size_t(s) + 1] - row;
      const int table = plan.ropeTables()[size_t(s)];
      const float* inv = local ? invFreqLocal.data()
                         : table == StepPlan::kRopeLong ? invFreqLong.data()
                         : table >= StepPlan::kRopeDynamic ? plan.dynamicInvFreq(table - StepPlan::kRopeDynamic)
                                                           : invFreq.data();
      applyRope(ws.q.data() + row * Q, Q, pos + row, inv, n, c.numAttentionHeads, c.headDim, c.rotaryDim, ms);
      applyRope(ws.k.data() + row * KV, KV, pos + row, inv, n, c.numKeyValueHeads, c.headDim, c.rotaryDim, ms);
    }
    const int window = c.layerWindow[size_t(l)];  // 0: global; else keys (p - window, p] (HF sliding_window_overlay)
    // Append this step's keys/values into each sequence's blocks, then point every row at its
    // own block table (paged attention, prefill and decode alike).
    for (int s = 0; s < plan.numEntries(); s++) {
      const BatchEntry& e = batch[size_t(s)];
      KvCache& cache = e.kv->cache();
      const int32_t* table = plan.blockTables().data() + int64_t(s) * plan.maxBlocks();
      for (int row = plan.entryRows()[size_t(s)]; row < plan.entryRows()[size_t(s) + 1]; row++) {
        const int p = pos[row];
        e.kv->write(l, p, ws.k.data() + int64_t(row) * KV, ws.v.data() + int64_t(row) * KV);
        rows[size_t(row)] = PagedAttentionRow{cache.keys(l), cache.values(l), table, cache.blockSize(), p + 1, cache.dtype(),
                                              window > 0 ? std::max(0, p + 1 - window) : 0};
      }
    }
    pagedAttention(pool, ws.q.data(), Q, rows.data(), ws.attn.data(), Q, T, c.numAttentionHeads, c.numKeyValueHeads, c.headDim,
                        AttentionScores{c.attnScale, c.attnSoftcap});
    projection(plan, l, LoraModule::O, ws.attn.data(), w.wo, w.bo, ws.proj.data(), T, pool, ws);
    // Gemma2DecoderLayer: h = h + post_attention_layernorm(attn(...)).
    if (c.gemmaNorms) rmsNorm(ws.proj.data(), w.postNorm.data(), float(c.rmsNormEps), ws.proj.data(), T, H);
    for (int64_t i = 0; i < T * H; i++) ws.x[size_t(i)] += ws.proj[size_t(i)];

    // --- MLP block: h = h + down_proj(act(gate_proj(x)) * up_proj(x)), x = post_attention_layernorm(h)
    // (Gemma: x = pre_feedforward_layernorm(h), and post_feedforward_layernorm on the MLP output).
    rmsNorm(ws.x.data(), (c.gemmaNorms ? w.preFfnNorm : w.postNorm).data(), float(c.rmsNormEps), ws.xn.data(), T, H);
    projection(plan, l, LoraModule::Gate, ws.xn.data(), w.wGate, w.bGate, ws.gate.data(), T, pool, ws);
    projection(plan, l, LoraModule::Up, ws.xn.data(), w.wUp, w.bUp, ws.up.data(), T, pool, ws);
    if (c.hiddenAct == Activation::GeluTanh) geluTanhMul(ws.gate.data(), ws.up.data(), T * I);
    else siluMul(ws.gate.data(), ws.up.data(), T * I);
    projection(plan, l, LoraModule::Down, ws.gate.data(), w.wDown, w.bDown, ws.proj.data(), T, pool, ws);
    if (c.gemmaNorms) rmsNorm(ws.proj.data(), w.postFfnNorm.data(), float(c.rmsNormEps), ws.proj.data(), T, H);
    for (int64_t i = 0; i < T * H; i++) ws.x[size_t(i)] += ws.proj[size_t(i)];
  }
  for (const BatchEntry& e : batch) e.kv->setLength(e.startPos + e.numTokens);

  // Final norm and lm_head only on the rows that need logits.
  ws.sel.resize(size_t(R * H));
  for (int64_t out = 0; out < R; out++) {
    std::copy_n(ws.x.data() + int64_t(plan.logitRows()[size_t(out)]) * H, H, ws.sel.data() + out * H);
  }
  rmsNorm(ws.sel.data(), model.finalNorm().data(), float(c.rmsNormEps), ws.sel.data(), R, H);
  logits->resize(size_t(R * V));
  linear(pool, ws.sel.data(), H, model.head(), logits->data(), V, R, false, nullptr, ws.bf16Activations);
  if (c.finalSoftcap > 0) softcap(logits->data(), R * V, c.finalSoftcap);  // Gemma 2 final_logit_softcapping
}

}  // namespace cpu

namespace {

/** ForwardBackend over cpu::forward on its own ThreadPool (the reference backend). */
class CpuForward final : public ForwardBackend {
 public:
  CpuForward(std::shared_ptr<const Model> model, int threads, int threadNice, bool bf16Activations)
      : model_(std::move(model)), pool_(std::make_unique<cpu::ThreadPool>(threads < 1 ? 1 : threads, threadNice)) {
    ws_.bf16Activations = bf16Activations;
  }

  const char* name() const override { return "cpu"; }
  bool complete() const override { return true; }
  void uploadWeights() override {}
  int64_t weightBytes() const override { return model_->weightBytes(); }
  void attachKv(KvCache&) override {}
  void uploadAdapter(int, const LoraAdapter&) override {}
  void waitAdapters() override {}
  void forward(const std::vector<BatchEntry>& batch, std::vector<float>* logits) override {
    cpu::forward(*model_, batch, *pool_, ws_, logits);
  }

 private:
  std::shared_ptr<const Model> model_;
  std::unique_ptr<cpu::ThreadPool> pool_;
  cpu::Workspace ws_;
};

}  // namespace

std::unique_ptr<ForwardBackend> makeCpuForward(std::shared_ptr<const Model> model, int threads, int threadNice,
                                               bool bf16Activations) {
  return std::make_unique<CpuForward>(std::move(model), threads, threadNice, bf16Activations);
}

}  // namespace openlora
