// CUDA kernel checks: GEMM (WMMA, cuBLAS), int8 and fp8 weight GEMMs. Each kernel against a naive CPU loop on random inputs.
#include "check_util.cuh"
#include "../../../native/cuda/cublas_loader.cuh"
#include "../../../native/cuda/gemm.cuh"
#include "../../../native/cuda/quant_fp8.cuh"
#include "../../../native/cuda/quant_int8.cuh"

namespace openlora::cuda_checks {

namespace {

// GEMM and quantized GEMM

std::vector<float> refGemm(const std::vector<float>& x, const std::vector<float>& w, int m, int n, int k) {
  std::vector<float> y(size_t(m) * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int kk = 0; kk < k; kk++) acc += double(x[size_t(i) * k + kk]) * w[size_t(j) * k + kk];
      y[size_t(i) * n + j] = float(acc);
    }
  return y;
}

void checkGemm(DType in, DType outT, int m, int n, int k, bool cublas) {
  auto x = randomVec(size_t(m) * k), w = randomVec(size_t(n) * k, -0.05f, 0.05f), y0 = randomVec(size_t(m) * n);
  roundAll(in, x), roundAll(in, w), roundAll(outT, y0);
  const float alpha = 1.5f, beta = 0.5f;
  auto ref = refGemm(x, w, m, n, k);
  for (size_t i = 0; i < ref.size(); i++) ref[i] = alpha * ref[i] + beta * y0[i];
  std::unique_ptr<Dev> dX(upload(in, x)), dW(upload(in, w)), dY(upload(outT, y0));
  const char* name = cublas ? "cublas_gemm" : "gemm";
  cudaError_t err = cublas ? launch_cublas_gemm(dY->p, n, outT, dX->p, k, dW->p, k, m, n, k, alpha, beta, in, nullptr)
                           : launch_gemm(dY->p, n, outT, dX->p, k, dW->p, k, m, n, k, alpha, beta, in, nullptr);
  if (!launched(name, err)) return;
  const float tol = outT == DType::F32 ? 2e-3f : 1.6e-2f;
  report(std::string(name) + " " + dtypeName(in) + "->" + dtypeName(outT) + " " + std::to_string(m) + "x" +
             std::to_string(n) + "x" + std::to_string(k),
         download(outT, dY.get(), ref.size()), ref, tol, tol);
}

void checkW8(DType t, int m, int n, int k) {
  auto x = randomVec(size_t(m) * k), y0 = randomVec(size_t(m) * n);
  roundAll(t, x), roundAll(t, y0);
  std::vector<int8_t> wq(size_t(n) * k);
  for (auto& v : wq) {
    do v = int8_t(int(g_rng() % 255) - 127);
    while (v == 0);
  }
  auto sc = randomVec(size_t(n), 0.001f, 0.01f);
  std::vector<float> ref(size_t(m) * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int kk = 0; kk < k; kk++) acc += double(x[size_t(i) * k + kk]) * wq[size_t(j) * k + kk];
      ref[size_t(i) * n + j] = float(y0[size_t(i) * n + j] + 0.5 * sc[size_t(j)] * acc);
    }
  std::unique_ptr<Dev> dX(upload(t, x)), dY(upload(t, y0)), dW(uploadRaw(wq)), dS(uploadRaw(sc));
  if (!launched("gemm_w8", launch_gemm_w8(dY->p, n, dX->p, k, dW->as<int8_t>(), dS->as<float>(), m, n, k, 0.5f, true, t, nullptr)))
    return;
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(std::string("gemm_w8 ") + dtypeName(t) + " " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k),
         download(t, dY.get(), ref.size()), ref, tol, tol);
}

void checkFp8(DType t, int m, int n, int k, bool perTensor, int cc) {
  auto x = randomVec(size_t(m) * k);
  roundAll(t, x);
  std::vector<uint8_t> wq(size_t(n) * k);
  std::vector<float> wf(wq.size());
  for (size_t i = 0; i < wq.size(); i++) {
    __nv_fp8_e4m3 v(randomVec(1, -4, 4)[0]);
    wq[i] = v.__x;
    wf[i] = float(v);
  }
  const int ns = perTensor ? 1 : n;
  auto sc = randomVec(size_t(ns), 0.01f, 0.1f);
  std::vector<float> ref(size_t(m) * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int kk = 0; kk < k; kk++) acc += double(x[size_t(i) * k + kk]) * wf[size_t(j) * k + kk];
      ref[size_t(i) * n + j] = float(sc[perTensor ? 0 : size_t(j)] * acc);
    }
  std::unique_ptr<Dev> dX(upload(t, x)), dY(new Dev(ref.size() * 4)), dW(uploadRaw(wq)), dS(uploadRaw(sc));
  const std::string name = std::string("gemm_fp8 ") + (perTensor ? "per-tensor " : "per-channel ") + dtypeName(t) + " " +
                           std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
  const cudaError_t err = launch_gemm_fp8(dY->p, n, dX->p, k, dW->as<uint8_t>(), dS->as<float>(), ns, m, n, k, 1.0f, false, t, nullptr);
  if (cc < 89) {
    reportBool(name + " (sm_" + std::to_string(cc) + ")", err == cudaErrorNotSupported &&
                   std::strstr(last_error_message(), "No suitable kernel") != nullptr,
               std::string("refused: ") + last_error_message());
    return;
  }
  if (!launched(name.c_str(), err)) return;
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(name, download(t, dY.get(), ref.size()), ref, tol, tol);
}

}  // namespace

void runGemmChecks(const Shape& s, int cc) {
  for (DType in : {DType::BF16, DType::F16})
    for (DType out : {in, DType::F32}) {
      checkGemm(in, out, 1, s.hidden, s.hidden, false);
      checkGemm(in, out, 37, s.inter, s.hidden, false);
      checkGemm(in, out, 70, s.hidden, s.inter, false);
    }
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    checkW8(t, 1, s.hidden, s.hidden);
    checkW8(t, 13, s.inter, s.hidden);
    checkFp8(t, 3, s.hidden, s.hidden, false, cc);
    checkFp8(t, 9, s.inter, s.hidden, true, cc);
  }
}

void runCublasChecks() {
  const char* why = nullptr;
  if (cublas_available(&why)) {
    checkGemm(DType::BF16, DType::BF16, 37, 704, 256, true);
    checkGemm(DType::F16, DType::F32, 70, 4096, 4096, true);
  } else {
    std::printf("SKIP  cublas_gemm: %s\n", why);
  }
}

}  // namespace openlora::cuda_checks
