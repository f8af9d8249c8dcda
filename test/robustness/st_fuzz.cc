// AddressSanitizer driver for the native safetensors reader (npm run soak with SOAK_ASAN=1):
// opens every file named on the command line with openlora::SafetensorsFile; a refusal is a
// std::exception (counted), anything else (an out-of-bounds read, a crash) aborts under ASan.
// Build: g++ -std=c++17 -g -O1 -fsanitize=address,undefined -Inative/src test/robustness/st_fuzz.cc
//        native/src/safetensors.cc native/src/json.cc native/src/dtype.cc
#include <cstdio>
#include <exception>

#include "safetensors.h"

int main(int argc, char** argv) {
  int ok = 0, refused = 0;
  for (int i = 1; i < argc; i++) {
    try {
      openlora::SafetensorsFile f(argv[i]);
      for (const auto& [name, t] : f.tensors()) {
        // Touch the first and last byte of every tensor: any bad offset shows up under ASan.
        const size_t n = static_cast<size_t>(t.numel()) * openlora::dtypeSize(t.dtype);
        if (n > 0) ok += (t.data[0] ^ t.data[n - 1]) == 0x100;
      }
      ok++;
    } catch (const std::exception&) {
      refused++;
    }
  }
  std::printf("{\"parsed\": %d, \"refused\": %d}\n", ok, refused);
  return 0;
}
