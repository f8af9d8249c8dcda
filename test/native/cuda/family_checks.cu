// CUDA kernel checks of the model-family features (issue 17), each against the CPU forward's own
// code (native/cpu/ops.cc, compiled into this file): partial rotary RoPE with an attention factor
// and a per-token table (longrope / dynamic NTK / Gemma 3 local bases), per-head q/k RMSNorm
// (Qwen3, Gemma 3), GeGLU with gelu_pytorch_tanh (Gemma), soft-capping (Gemma 2 final logits) and
// the embedding normalizer (Gemma). Sliding windows and attention soft-capping are checked with
// the attention kernels (attention_checks.cu).
#include "check_util.cuh"
#include "../../../native/cuda/elementwise.cuh"
#include "../../../native/cuda/rms_norm.cuh"
#include "../../../native/cuda/rope.cuh"
#include "../../../native/cuda/swiglu.cuh"
// NOTE(why): the CPU reference is the CPU backend's own code, not a restatement: ops.cc has no
// dependency beyond the standard library, and listing it here (not in sources.json, where it
// belongs to "core") keeps the one source list free of duplicates.
#include "../../../native/cpu/ops.cc"

namespace openlora::cuda_checks {

namespace {

/** RoPE over `rot` of head_dim dims, mscale, two tables chosen per token, vs cpu::applyRope per token. */
void checkRopeFamily(const Shape& s, DType t, int rot, float mscale) {
  const int n = 21, D = s.headDim, half = rot / 2, QKV = (s.heads + 2 * s.kvHeads) * D;
  // Two tables: a default base and a stretched one (what longrope's long factors do).
  std::vector<float> tables(size_t(2 * half));
  for (int j = 0; j < half; j++) {
    tables[size_t(j)] = 1.0f / std::pow(10000.0f, float(2 * j) / float(rot));
    tables[size_t(half + j)] = tables[size_t(j)] / (1.0f + 0.25f * float(j));
  }
  auto qkv = randomVec(size_t(n) * QKV);
  roundAll(t, qkv);
  std::vector<int32_t> pos(n), which(n);
  for (int i = 0; i < n; i++) pos[size_t(i)] = int(g_rng() % 70000), which[size_t(i)] = int(g_rng() % 2);
  std::unique_ptr<Dev> dX(upload(t, qkv)), dP(uploadRaw(pos)), dT(uploadRaw(tables)), dW(uploadRaw(which));
  char* base = static_cast<char*>(dX->p);
  if (!launched("rope (family)", launch_rope(base, QKV, base + size_t(s.heads) * D * dtypeSize(t), QKV, dP->as<int32_t>(),
                                             dT->as<float>(), dW->as<int32_t>(), n, s.heads, s.kvHeads, D, rot, mscale, t,
                                             nullptr)))
    return;
  std::vector<float> ref = qkv;
  for (int i = 0; i < n; i++) {
    const float* inv = tables.data() + size_t(which[size_t(i)]) * half;
    float* row = ref.data() + size_t(i) * QKV;
    cpu::applyRope(row, QKV, &pos[size_t(i)], inv, 1, s.heads, D, rot, mscale);
    cpu::applyRope(row + size_t(s.heads) * D, QKV, &pos[size_t(i)], inv, 1, s.kvHeads, D, rot, mscale);
  }
  const float tol = t == DType::F32 ? 2e-4f : 1.6e-2f;
  report(std::string("rope rotary ") + std::to_string(rot) + "/" + std::to_string(D) + " mscale " + std::to_string(mscale).substr(0, 4) +
             " " + dtypeName(t) + " " + s.name,
         download(t, dX.get(), ref.size()), ref, tol, tol);
}

/** q_norm / k_norm over each head of a fused qkv row, vs cpu::rmsNorm over [tokens * heads, head_dim]. */
void checkHeadNorm(const Shape& s, DType t) {
  const int n = 17, D = s.headDim, Q = s.heads * D, KV = s.kvHeads * D, QKV = Q + 2 * KV;
  const float eps = 1e-6f;
  auto qkv = randomVec(size_t(n) * QKV, -3, 3), wq = randomVec(size_t(D), 0.5f, 1.5f), wk = randomVec(size_t(D), 0.5f, 1.5f);
  roundAll(t, qkv), roundAll(t, wq), roundAll(t, wk);
  std::unique_ptr<Dev> dX(upload(t, qkv)), dQ(upload(t, wq)), dK(upload(t, wk));
  char* base = static_cast<char*>(dX->p);
  char* kbase = base + size_t(Q) * dtypeSize(t);
  if (!launched("head_rms_norm q", launch_head_rms_norm(base, QKV, dQ->p, base, QKV, n, s.heads, D, eps, t, nullptr))) return;
  if (!launched("head_rms_norm k", launch_head_rms_norm(kbase, QKV, dK->p, kbase, QKV, n, s.kvHeads, D, eps, t, nullptr))) return;
  std::vector<float> ref = qkv;
  for (int i = 0; i < n; i++) {
    float* row = ref.data() + size_t(i) * QKV;
    cpu::rmsNorm(row, wq.data(), eps, row, s.heads, D);
    cpu::rmsNorm(row + Q, wk.data(), eps, row + Q, s.kvHeads, D);
  }
  const float tol = t == DType::F32 ? 1e-5f : 1.6e-2f;
  report(std::string("head_rms_norm q/k ") + dtypeName(t) + " " + s.name, download(t, dX.get(), ref.size()), ref, tol, tol);
}

/** GeGLU on a fused [rows, 2 inter] gate_up buffer, vs cpu::geluTanhMul. */
void checkGelu(const Shape& s, DType t) {
  const int rows = 11, I = s.inter;
  auto gu = randomVec(size_t(rows) * 2 * I, -5, 5);
  roundAll(t, gu);
  std::unique_ptr<Dev> dG(upload(t, gu)), dO(new Dev(size_t(rows) * I * 4));
  if (!launched("gelu_tanh_mul", launch_gelu_tanh_mul(dG->p, 2 * I, static_cast<char*>(dG->p) + size_t(I) * dtypeSize(t), 2 * I,
                                                      dO->p, I, rows, I, t, nullptr)))
    return;
  std::vector<float> ref(size_t(rows) * I), up(size_t(rows) * I);
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < I; i++) {
      ref[size_t(r) * I + i] = gu[size_t(r) * 2 * I + i];
      up[size_t(r) * I + i] = gu[size_t(r) * 2 * I + I + i];
    }
  cpu::geluTanhMul(ref.data(), up.data(), int64_t(ref.size()));
  const float tol = t == DType::F32 ? 1e-5f : 1e-2f;
  report(std::string("gelu_tanh_mul ") + dtypeName(t) + " " + s.name, download(t, dO.get(), ref.size()), ref, tol, tol);
}

/** Soft-capping of fp32 logits (cap 30) and scaling (sqrt(hidden)) of activations, vs cpu::softcap and a multiply. */
void checkSoftcapAndScale(const Shape& s, DType t) {
  const int64_t n = int64_t(s.vocab) * 3 + 5;
  auto x = randomVec(size_t(n), -80, 80);
  roundAll(t, x);
  std::unique_ptr<Dev> dX(upload(t, x));
  if (launched("softcap", launch_softcap(dX->p, n, 30.0f, t, nullptr))) {
    std::vector<float> ref = x;
    cpu::softcap(ref.data(), n, 30.0f);
    const float tol = t == DType::F32 ? 1e-5f : 1.6e-2f;
    report(std::string("softcap 30 ") + dtypeName(t) + " " + s.name, download(t, dX.get(), ref.size()), ref, tol, tol);
  }
  auto y = randomVec(size_t(s.hidden) * 7, -2, 2);
  roundAll(t, y);
  std::unique_ptr<Dev> dY(upload(t, y));
  const float k = std::sqrt(float(s.hidden));
  if (launched("scale", launch_scale(dY->p, int64_t(y.size()), k, t, nullptr))) {
    std::vector<float> ref(y.size());
    for (size_t i = 0; i < y.size(); i++) ref[i] = roundTo(t, y[i] * k);
    report(std::string("scale sqrt(hidden) ") + dtypeName(t) + " " + s.name, download(t, dY.get(), ref.size()), ref, 0, 0);
  }
}

}  // namespace

void runFamilyChecks(const Shape& s) {
  for (DType t : {DType::BF16, DType::F32}) {
    checkRopeFamily(s, t, s.headDim, 1.0f);
    checkRopeFamily(s, t, s.headDim * 3 / 4 / 2 * 2, 1.19f);  // Phi-4-mini: partial_rotary_factor 0.75, longrope factor
    checkHeadNorm(s, t);
    checkGelu(s, t);
    checkSoftcapAndScale(s, t);
  }
}

}  // namespace openlora::cuda_checks
