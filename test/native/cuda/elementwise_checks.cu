// CUDA kernel checks: embedding, rms_norm, rope, swiglu. Each kernel against a naive CPU loop on random inputs.
#include "check_util.cuh"
#include "../../../native/cuda/embedding.cuh"
#include "../../../native/cuda/rms_norm.cuh"
#include "../../../native/cuda/rope.cuh"
#include "../../../native/cuda/swiglu.cuh"

namespace openlora::cuda_checks {

namespace {

// Element-wise kernels

void checkEmbedding(const Shape& s, DType t) {
  const int vocab = 1000, n = 37;
  auto table = randomVec(size_t(vocab) * s.hidden);
  roundAll(t, table);
  std::vector<int32_t> ids(n);
  for (auto& i : ids) i = int(g_rng() % vocab);
  ids[3] = -1;  // out of range: zero row
  std::unique_ptr<Dev> dT(upload(t, table)), dI(uploadRaw(ids)), dO(new Dev(size_t(n) * s.hidden * 4));
  if (!launched("embedding", launch_embedding(dI->as<int32_t>(), dT->p, dO->p, s.hidden, n, s.hidden, vocab, t, nullptr))) return;
  std::vector<float> ref(size_t(n) * s.hidden, 0.0f);
  for (int r = 0; r < n; r++)
    if (ids[r] >= 0)
      for (int j = 0; j < s.hidden; j++) ref[size_t(r) * s.hidden + j] = table[size_t(ids[r]) * s.hidden + j];
  report(std::string("embedding ") + dtypeName(t) + " " + s.name, download(t, dO.get(), ref.size()), ref, 0, 0);
}

void checkRmsNorm(const Shape& s, DType t) {
  const int rows = 19, H = s.hidden;
  const float eps = 1e-5f;
  auto x = randomVec(size_t(rows) * H, -2, 2), w = randomVec(H, 0.5f, 1.5f), res = randomVec(size_t(rows) * H, -2, 2);
  roundAll(t, x), roundAll(t, w), roundAll(t, res);
  std::unique_ptr<Dev> dX(upload(t, x)), dW(upload(t, w)), dY(new Dev(x.size() * 4)), dR(upload(t, res));
  auto norm = [&](const std::vector<float>& in, std::vector<float>& out) {
    for (int r = 0; r < rows; r++) {
      double ss = 0;
      for (int j = 0; j < H; j++) ss += double(in[size_t(r) * H + j]) * in[size_t(r) * H + j];
      const float inv = float(1.0 / std::sqrt(ss / H + eps));
      for (int j = 0; j < H; j++) out[size_t(r) * H + j] = roundTo(t, w[j] * roundTo(t, in[size_t(r) * H + j] * inv));
    }
  };
  const float tol = t == DType::F32 ? 1e-5f : 1.6e-2f;
  if (launched("rms_norm", launch_rms_norm(dX->p, H, dW->p, dY->p, H, rows, H, eps, t, nullptr))) {
    std::vector<float> ref(x.size());
    norm(x, ref);
    report(std::string("rms_norm ") + dtypeName(t) + " " + s.name, download(t, dY.get(), ref.size()), ref, tol, tol);
  }
  if (launched("fused_add_rms_norm",
               launch_fused_add_rms_norm(dX->p, H, dR->p, dW->p, dY->p, H, rows, H, eps, t, nullptr))) {
    std::vector<float> sum(x.size()), ref(x.size());
    for (size_t i = 0; i < x.size(); i++) sum[i] = roundTo(t, res[i] + x[i]);
    norm(sum, ref);
    report(std::string("fused_add_rms_norm residual ") + dtypeName(t) + " " + s.name, download(t, dR.get(), sum.size()), sum,
           0, 0);
    report(std::string("fused_add_rms_norm out ") + dtypeName(t) + " " + s.name, download(t, dY.get(), ref.size()), ref,
           tol, tol);
  }
}

void checkRope(const Shape& s, DType t, bool llama3) {
  const int n = 23, D = s.headDim, ldq = s.heads * D, ldk = s.kvHeads * D;
  std::vector<float> inv(size_t(D / 2));
  if (llama3) rope_inv_freq(500000.0, D, RopeScalingKind::Llama3, 8.0, 1.0, 4.0, 8192, inv.data());
  else rope_inv_freq(10000.0, D, RopeScalingKind::None, 1, 1, 1, 1, inv.data());
  auto q = randomVec(size_t(n) * ldq), k = randomVec(size_t(n) * ldk);
  roundAll(t, q), roundAll(t, k);
  std::vector<int32_t> pos(n);
  for (auto& p : pos) p = int(g_rng() % (llama3 ? 131072 : 2048));
  std::unique_ptr<Dev> dQ(upload(t, q)), dK(upload(t, k)), dP(uploadRaw(pos)), dF(uploadRaw(inv));
  if (!launched("rope", launch_rope(dQ->p, ldq, dK->p, ldk, dP->as<int32_t>(), dF->as<float>(), nullptr, n, s.heads, s.kvHeads, D,
                                    D, 1.0f, t, nullptr)))
    return;
  auto rot = [&](std::vector<float>& x, int heads, int ld) {
    for (int r = 0; r < n; r++)
      for (int h = 0; h < heads; h++)
        for (int j = 0; j < D / 2; j++) {
          float* p = x.data() + size_t(r) * ld + size_t(h) * D;
          const double a = double(float(pos[r]) * inv[j]);  // fp32 angle, as HF
          const double x1 = p[j], x2 = p[j + D / 2];
          p[j] = float(x1 * std::cos(a) - x2 * std::sin(a));
          p[j + D / 2] = float(x2 * std::cos(a) + x1 * std::sin(a));
        }
  };
  rot(q, s.heads, ldq), rot(k, s.kvHeads, ldk);
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  const std::string tag = std::string(llama3 ? "rope llama3 " : "rope ") + dtypeName(t) + " " + s.name;
  report(tag + " q", download(t, dQ.get(), q.size()), q, tol, tol);
  report(tag + " k", download(t, dK.get(), k.size()), k, tol, tol);
}

void checkSwiglu(const Shape& s, DType t) {
  const int rows = 13, I = s.inter;
  auto gu = randomVec(size_t(rows) * 2 * I, -4, 4);  // fused [rows, 2 * inter]
  roundAll(t, gu);
  std::unique_ptr<Dev> dG(upload(t, gu)), dO(new Dev(size_t(rows) * I * 4));
  if (!launched("silu_mul", launch_silu_mul(dG->p, 2 * I, static_cast<char*>(dG->p) + size_t(I) * dtypeSize(t), 2 * I,
                                            dO->p, I, rows, I, t, nullptr)))
    return;
  std::vector<float> ref(size_t(rows) * I);
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < I; i++) {
      const double g = gu[size_t(r) * 2 * I + i], u = gu[size_t(r) * 2 * I + I + i];
      ref[size_t(r) * I + i] = float(g / (1 + std::exp(-g)) * u);
    }
  const float tol = t == DType::F32 ? 1e-5f : 1e-2f;
  report(std::string("silu_mul ") + dtypeName(t) + " " + s.name, download(t, dO.get(), ref.size()), ref, tol, tol);
}

}  // namespace

void runElementwiseChecks(const Shape& s) {
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    checkEmbedding(s, t);
    checkRmsNorm(s, t);
    checkRope(s, t, false);
    checkSwiglu(s, t);
  }
  checkRope(s, DType::BF16, true);
}

}  // namespace openlora::cuda_checks
