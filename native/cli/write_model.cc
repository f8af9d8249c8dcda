// See write_model.h.
#include "write_model.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "hf_names.h"
#include "random_weights.h"

namespace openlora::cli {

namespace {

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

std::vector<Tensor> llamaTensors(const ModelConfig& c) {
  const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, Q = c.qDim(), KV = c.kvDim();
  const hf::TextLayout& L = hf::kCausalLM;  // a LlamaForCausalLM checkpoint
  std::vector<Tensor> t{{hf::embedTokens(L), {V, H}}};
  for (int l = 0; l < c.numHiddenLayers; l++) {
    t.push_back({hf::inputNorm(L, l), {H}});
    t.push_back({hf::linearWeight(L, l, LoraModule::Q), {Q, H}});
    t.push_back({hf::linearWeight(L, l, LoraModule::K), {KV, H}});
    t.push_back({hf::linearWeight(L, l, LoraModule::V), {KV, H}});
    t.push_back({hf::linearWeight(L, l, LoraModule::O), {H, Q}});
    t.push_back({hf::postAttentionNorm(L, l), {H}});
    t.push_back({hf::linearWeight(L, l, LoraModule::Gate), {I, H}});
    t.push_back({hf::linearWeight(L, l, LoraModule::Up), {I, H}});
    t.push_back({hf::linearWeight(L, l, LoraModule::Down), {H, I}});
  }
  t.push_back({hf::finalNorm(L), {H}});
  if (!c.tieWordEmbeddings) t.push_back({hf::lmHead(L), {V, H}});
  return t;
}

void writeAll(std::FILE* f, const void* p, size_t n, const std::string& path) {
  if (std::fwrite(p, 1, n, f) != n) throw std::runtime_error(path + ": write failed: " + std::strerror(errno));
}

}  // namespace

std::string defaultBosEos(int vocab) {
  return vocab == 128256 ? "\"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009]" : "\"bos_token_id\": 1, \"eos_token_id\": 2";
}

void writeRandomModel(const ModelConfig& c, uint64_t seed, const std::string& dir, int threads, const std::string& bosEosJson) {
  ::mkdir(dir.c_str(), 0755);
  const std::string cfgPath = dir + "/config.json";
  std::FILE* cf = std::fopen(cfgPath.c_str(), "w");
  if (!cf) throw std::runtime_error(cfgPath + ": cannot open: " + std::strerror(errno));
  std::fprintf(cf,
               "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
               "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
               "\"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d, \"rms_norm_eps\": %g, \"rope_theta\": %g, "
               "\"tie_word_embeddings\": %s, \"torch_dtype\": \"bfloat16\", %s}\n",
               c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads, c.numKeyValueHeads, c.headDim, c.vocabSize,
               c.maxPositionEmbeddings, c.rmsNormEps, c.ropeTheta, c.tieWordEmbeddings ? "true" : "false", bosEosJson.c_str());
  std::fclose(cf);

  const std::vector<Tensor> tensors = llamaTensors(c);
  std::string header = "{";
  int64_t offset = 0;
  for (const Tensor& t : tensors) {
    const int64_t bytes = t.numel() * 2;
    std::string shape;
    for (int64_t d : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    header += (header.size() > 1 ? ", " : "") + std::string("\"") + t.name + "\": {\"dtype\": \"BF16\", \"shape\": [" + shape +
              "], \"data_offsets\": [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';  // the data region starts 8-byte aligned
  const std::string path = dir + "/model.safetensors";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; i++) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  writeAll(f, len, 8, path);
  writeAll(f, header.data(), header.size(), path);
  constexpr int64_t kChunk = int64_t(1) << 20;
  std::vector<uint16_t> buf(static_cast<size_t>(kChunk));
  threads = std::max(1, threads);
  for (const Tensor& t : tensors) {
    float scale, offsetv;
    initOf(t.name, &scale, &offsetv);
    const uint64_t stream = streamOf(t.name);
    for (int64_t i0 = 0; i0 < t.numel(); i0 += kChunk) {
      const int64_t n = std::min(kChunk, t.numel() - i0);
      auto work = [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) buf[size_t(i)] = randomBf16(seed, stream, uint64_t(i0 + i), scale, offsetv);
      };
      std::vector<std::thread> ts;
      for (int k = 1; k < threads; k++) ts.emplace_back(work, n * k / threads, n * (k + 1) / threads);
      work(0, n / threads);
      for (auto& th : ts) th.join();
      writeAll(f, buf.data(), size_t(n) * 2, path);  // little-endian host (x86-64, arm64)
    }
  }
  if (std::fclose(f) != 0) throw std::runtime_error(path + ": close failed: " + std::strerror(errno));
}

}  // namespace openlora::cli
