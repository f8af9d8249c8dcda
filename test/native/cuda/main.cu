// The CUDA kernel checks' driver: every native/cuda kernel family against a naive CPU loop on
// random inputs (never zeros), at the demo model's shapes (hidden 256, heads 8/4, head_dim 32,
// inter 704) and Llama-3-8B's (4096, 32/8, 128, 14336, LoRA rank 16). Prints max abs / rel
// error and PASS/FAIL per check; exit 0 all pass, 1 a failure, 2 no CUDA device.
//
// Build and run: `npm run test:cuda` (test/native/cuda/run.mjs; skips with a message and exit 0
// when no GPU answers). By hand: cuda_checks [--quick] [--only elementwise|attention|family|lora|gemm|sampling]
// (--quick: demo shapes only).
#include <cstring>
#include <string>

#include "check_util.cuh"

using namespace openlora::cuda_checks;

int main(int argc, char** argv) {
  bool quick = false;
  std::string only;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else {
      std::printf("usage: cuda_checks [--quick] [--only elementwise|attention|family|lora|gemm|sampling]\n");
      return 2;
    }
  }
  const auto want = [&](const char* family) { return only.empty() || only == family; };
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("no CUDA device (%s)\n", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    return 2;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const int cc = prop.major * 10 + prop.minor;
  std::printf("device 0: %s (sm_%d)\n", prop.name, cc);

  const Shape demo{"demo", 256, 8, 4, 32, 704, 16, 2048};
  const Shape llama{"llama3-8b", 4096, 32, 8, 128, 14336, 16, 128256};
  std::vector<Shape> shapes = {demo};
  if (!quick) shapes.push_back(llama);

  for (const Shape& s : shapes) {
    std::printf("--- %s: hidden %d, heads %d/%d, head_dim %d, inter %d, rank %d\n", s.name, s.hidden, s.heads, s.kvHeads,
                s.headDim, s.inter, s.rank);
    if (want("elementwise")) runElementwiseChecks(s);
    if (want("attention")) runAttentionChecks(s);
    if (want("family")) runFamilyChecks(s);
    if (want("lora")) runLoraChecks(s);
    if (want("gemm")) runGemmChecks(s, cc);
    if (want("sampling")) runSamplingChecks(s);
  }
  if (want("gemm")) runCublasChecks();
  if (want("sampling")) runSamplingDistributionCheck();
  std::printf("%s: %d failure(s)\n", g_failures ? "FAIL" : "PASS", g_failures);
  return g_failures ? 1 : 0;
}
