// The CPU forward, the reference every other backend is checked against. It follows HF
// modeling_llama.py (LlamaDecoderLayer) step by step, with the changes of modeling_qwen3.py,
// modeling_gemma2.py / modeling_gemma3.py and modeling_phi3.py where the config asks for them
// (config.h). See forward.h.
#include "forward.h"

#include <algorithm>
#include <functional>
#include <memory>

#include "../src/backend.h"
#include "dispatch.h"  // useAvx2()
#include "fused_lora.h"
#include "ops.h"
#include "paged_attention.h"

namespace openlora {
namespace cpu {

namespace {

/**
 * fn(rowBegin, rowEnd) over [0, T) rows of `width` floats each, in tasks of at least ~32k
 * elements: a prefill's norms, SwiGLU and residual adds are split over the pool, a decode step's
 * few rows run inline (parallelFor does so when T <= grain). Per-row ops give the same bits either way.
 */
void forRows(ThreadPool& pool, int64_t T, int64_t width, const std::function<void(int64_t, int64_t)>& fn) {
  pool.parallelFor(T, std::max<int64_t>(1, (int64_t(32) * 1024 + width - 1) / std::max<int64_t>(1, width)), fn);
}

/** x[i] += d[i] over rows [b, e) of width n (the residual connection). */
void addRows(float* x, const float* d, int64_t b, int64_t e, int64_t n) {
  for (int64_t i = b * n; i < e * n; i++) x[i] += d[i];
}

/**
 * Group module m's LoRA terms of this step into lb (adapter pairs, prefill rows as segments,
 * decode rows gathered). Returns whether there are any.
 */
bool gatherAdapters(const StepPlan& plan, int layer, LoraModule m, LoraBatch& lb) {
  lb.clear();
  for (const LoraSpan* sp = plan.spansBegin(layer, m); sp != plan.spansEnd(layer, m); ++sp) {
    lb.add(sp->pair->a.data(), sp->pair->bT.data(), sp->pair->rank, sp->rowBegin, sp->rowEnd, sp->scale);
  }
  if (!lb.empty()) lb.finalize();
  return !lb.empty();
}

/** One projection of projections(): its module, weight, bias and output [T, w->out]. */
struct ProjectionOut {
  LoraModule module;
  const Linear* w;
  const std::vector<float>* bias;
  float* out;
};

/**
 * NOTE(why): below this many rows the base products are bound by reading W, as the LoRA is:
 * running them together gains nothing and cuts the one-row products' weight streams short.
 */
constexpr int64_t kFusedMinRows = 4;
/**
 * NOTE(why): the fused job pays when the adapters' bytes are many per row (decode rows over many
 * adapters: 16 x 16 adapters 0.74 -> 0.83 of the base); with prompt segments each adapter serves
 * many rows and the sgmv is bound by arithmetic: 16 prompts of 32 tokens over 16 adapters
 * prefilled at 381-395 tok/s fused against 396-408 unfused (Zen 5, interleaved).
 */
constexpr int64_t kFusedMaxRowsPerGroup = 16;

/**
 * Several projections of the same input (q/k/v, gate/up, or one): out_j = in W_j^T (+ bias_j) +
 * sum_i w_i s_i B_i (A_i in) per row, in that order of additions, the same bits on every path.
 * With adapters in the step, float weights, at least kFusedMinRows rows and at most
 * kFusedMaxRowsPerGroup LoRA rows per adapter on average: one fused job (cpu/fused_lora.h: the
 * adapters prefetched during the base products). Otherwise the base
 * products run as one parallel job (linearMulti: the threads meet once and share the small k/v
 * matrices), then each module's bias and one sgmv.
 */
void projections(const StepPlan& plan, int layer, const float* in, const ProjectionOut* ps, int count, int64_t T, ThreadPool& pool,
                 Workspace& ws) {
  if (count > kMaxFusedProjections) {  // one at a time (no caller has more today)
    for (int j = 0; j < count; j++) projections(plan, layer, in, ps + j, 1, T, pool, ws);
    return;
  }
  bool allPacked = true;
  int64_t terms = 0, groups = 0;
  for (int j = 0; j < count; j++) {
    LoraBatch& lb = ws.loraBatches[size_t(j)];
    if (gatherAdapters(plan, layer, ps[j].module, lb)) {
      terms += int64_t(lb.rows().size());
      groups += int64_t(lb.groups().size());
    }
    allPacked = allPacked && !ps[j].w->quantized();
  }
  const int64_t inDim = ps[0].w->in;
  if (groups > 0 && allPacked && T >= kFusedMinRows && terms <= kFusedMaxRowsPerGroup * groups) {
    FusedProjection fp[kMaxFusedProjections];
    for (int j = 0; j < count; j++) {
      fp[j] = FusedProjection{&ps[j].w->w, ps[j].bias->empty() ? nullptr : ps[j].bias->data(), &ws.loraBatches[size_t(j)], ps[j].out,
                              ps[j].w->out};
    }
    fusedProjections(pool, in, inDim, T, fp, count, ws.bf16Activations, ws.fused);
    return;
  }
  LinearOutput outs[kMaxFusedProjections];
  for (int j = 0; j < count; j++) outs[j] = LinearOutput{ps[j].w, ps[j].out, ps[j].w->out};
  linearMulti(pool, in, inDim, outs, count, T, ws.bf16Activations);
  for (int j = 0; j < count; j++) {
    const int64_t outDim = ps[j].w->out;
    if (!ps[j].bias->empty()) addBias(ps[j].out, outDim, ps[j].bias->data(), T, outDim);
    const LoraBatch& lb = ws.loraBatches[size_t(j)];
    if (!lb.empty()) sgmv(pool, in, inDim, inDim, ps[j].out, outDim, outDim, lb, ws.loraTmp);
  }
}

/** One projection: projections() with count 1. */
void projection(const StepPlan& plan, int layer, LoraModule m, const float* in, const Linear& w, const std::vector<float>& bias,
                float* out, int64_t T, ThreadPool& pool, Workspace& ws) {
  const ProjectionOut one{m, &w, &bias, out};
  projections(plan, layer, in, &one, 1, T, pool, ws);
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
    forRows(pool, T, H, [&](int64_t b, int64_t e) { rmsNorm(ws.x.data() + b * H, w.inputNorm.data(), float(c.rmsNormEps), ws.xn.data() + b * H, e - b, H); });
    const ProjectionOut qkv[3] = {{LoraModule::Q, &w.wq, &w.bq, ws.q.data()},
                                  {LoraModule::K, &w.wk, &w.bk, ws.k.data()},
                                  {LoraModule::V, &w.wv, &w.bv, ws.v.data()}};
    projections(plan, l, ws.xn.data(), qkv, 3, T, pool, ws);
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
    forRows(pool, T, H, [&](int64_t b, int64_t e) {
      if (c.gemmaNorms) rmsNorm(ws.proj.data() + b * H, w.postNorm.data(), float(c.rmsNormEps), ws.proj.data() + b * H, e - b, H);
      addRows(ws.x.data(), ws.proj.data(), b, e, H);
    });

    // --- MLP block: h = h + down_proj(act(gate_proj(x)) * up_proj(x)), x = post_attention_layernorm(h)
    // (Gemma: x = pre_feedforward_layernorm(h), and post_feedforward_layernorm on the MLP output).
    const float* ffnNorm = (c.gemmaNorms ? w.preFfnNorm : w.postNorm).data();
    forRows(pool, T, H, [&](int64_t b, int64_t e) { rmsNorm(ws.x.data() + b * H, ffnNorm, float(c.rmsNormEps), ws.xn.data() + b * H, e - b, H); });
    const ProjectionOut gateUp[2] = {{LoraModule::Gate, &w.wGate, &w.bGate, ws.gate.data()}, {LoraModule::Up, &w.wUp, &w.bUp, ws.up.data()}};
    projections(plan, l, ws.xn.data(), gateUp, 2, T, pool, ws);
    forRows(pool, T, I, [&](int64_t b, int64_t e) {
      if (c.hiddenAct == Activation::GeluTanh) geluTanhMul(ws.gate.data() + b * I, ws.up.data() + b * I, (e - b) * I);
      else siluMul(ws.gate.data() + b * I, ws.up.data() + b * I, (e - b) * I, useAvx2());
    });
    projection(plan, l, LoraModule::Down, ws.gate.data(), w.wDown, w.bDown, ws.proj.data(), T, pool, ws);
    forRows(pool, T, H, [&](int64_t b, int64_t e) {
      if (c.gemmaNorms) rmsNorm(ws.proj.data() + b * H, w.postFfnNorm.data(), float(c.rmsNormEps), ws.proj.data() + b * H, e - b, H);
      addRows(ws.x.data(), ws.proj.data(), b, e, H);
    });
  }
  for (const BatchEntry& e : batch) e.kv->setLength(e.startPos + e.numTokens);

  // Final norm and lm_head only on the rows that need logits.
  ws.sel.resize(size_t(R * H));
  for (int64_t out = 0; out < R; out++) {
    std::copy_n(ws.x.data() + int64_t(plan.logitRows()[size_t(out)]) * H, H, ws.sel.data() + out * H);
  }
  rmsNorm(ws.sel.data(), model.finalNorm().data(), float(c.rmsNormEps), ws.sel.data(), R, H);
  logits->resize(size_t(R * V));
  linear(pool, ws.sel.data(), H, model.head(), logits->data(), V, R, false, ws.bf16Activations);
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
