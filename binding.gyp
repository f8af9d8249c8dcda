# openlora native addon. Built by native/build.mjs (npm's `install` script / `npm run build:native`).
# When build.mjs found nvcc it has already compiled the CUDA sources of native/sources.json
# (cudaKernels + cudaBackend, for its cudaArchitectures) into build/cuda/libopenlora_cuda.a
# and sets OPENLORA_CUDA_HOME for this run; otherwise the addon is CPU only.
{
  "variables": {
    "openlora_cuda_home%": "<!(node -p \"process.env.OPENLORA_CUDA_HOME || ''\")"
  },
  "targets": [
    {
      "target_name": "openlora",
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      # The one source list: native/sources.json (core + addon), shared with CMakeLists.txt.
      "sources": ["<!@(node -p \"const s = require('./native/sources.json'); s.core.concat(s.addon).join(' ')\")"],
      "defines": ["NAPI_VERSION=8"],
      # NOTE(why): no -march=native: the binary must run on any x86-64; the hot kernels use
      # __attribute__((target("avx2,fma"))) with run-time dispatch instead.
      # RTTI: errors.h classifies exceptions with dynamic_cast (errorCodeOf).
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20", "-O2", "-O3"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-frtti", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-O2"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "GCC_ENABLE_CPP_RTTI": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_OPTIMIZATION_LEVEL": "3"
      },
      "conditions": [
        ["openlora_cuda_home!=''", {
          "defines": ["OPENLORA_WITH_CUDA"],
          # cudart is linked statically so require() cannot fail for a missing libcudart.so.
          "libraries": [
            "<(module_root_dir)/build/cuda/libopenlora_cuda.a",
            "<(openlora_cuda_home)/lib64/libcudart_static.a",
            "-ldl", "-lrt", "-lpthread"
          ]
        }]
      ]
    }
  ]
}
