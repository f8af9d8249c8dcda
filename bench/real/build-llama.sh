#!/usr/bin/env bash
# Build llama-server from the llama.cpp source that node-llama-cpp@3.22.1 ships as
# llama/gitRelease.bundle, for the real-shape bench's peer (bench/real/llama-server.ts).
# Everything goes under the cache dir (default ~/.cache/openlora-bench), outside the repo;
# each step is skipped when its output is there. The build runs under nice -n 19 with -j2
# (15-30 min on 2 cores). Usage: bench/real/build-llama.sh [CACHE_DIR]
set -euo pipefail
CACHE="${1:-${OPENLORA_BENCH_CACHE:-$HOME/.cache/openlora-bench}}"
mkdir -p "$CACHE"
cd "$CACHE"
if [ ! -f node-llama-cpp-3.22.1.tgz ]; then npm pack node-llama-cpp@3.22.1 >/dev/null; fi
if [ ! -d llama.cpp/.git ]; then
  tar -xzf node-llama-cpp-3.22.1.tgz package/llama/gitRelease.bundle
  git clone -q package/llama/gitRelease.bundle llama.cpp
fi
cd llama.cpp
if [ ! -x build/bin/llama-server ]; then
  nice -n 19 cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/dev/null
  nice -n 19 cmake --build build --target llama-server -j2
fi
python3 -c 'import numpy' 2>/dev/null || echo "build-llama.sh: python3 has no numpy: the GGUF conversion (bench/real/to_gguf.py) needs it (Debian: apt install python3-numpy)" >&2
echo "$CACHE/llama.cpp/build/bin/llama-server"
