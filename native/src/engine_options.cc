// See engine_options.h.
#include "engine_options.h"

#include <string>

#include "errors.h"

namespace openlora {

namespace {

void checkRange(const IntOption& opt, int64_t v, const char* hint = "") {
  if (v < opt.min || v > opt.max) {
    invalidArgument(std::string("EngineOptions.") + opt.name, std::string("EngineOptions.") + opt.name + " must be in [" +
                                                                  std::to_string(opt.min) + ", " + std::to_string(opt.max) + "]" +
                                                                  hint + ", got " + std::to_string(v));
  }
}

}  // namespace

void checkEngineOptions(const EngineOptions& o) {
  namespace d = engine_defaults;
  checkRange(d::kThreadNice, o.threadNice);
  checkRange(d::kThreads, o.threads);
  checkRange(d::kMaxLoras, o.maxLoras);
  checkRange(d::kMaxLoraRank, o.maxLoraRank);
  checkRange(d::kMaxNumSeqs, o.maxNumSeqs);
  checkRange(d::kMaxNumBatchedTokens, o.maxNumBatchedTokens);
  checkRange(d::kBlockSize, o.blockSize);
  checkRange(d::kNumKvBlocks, o.numKvBlocks, " (0: from kvCacheBytes)");
  checkRange(d::kMaxModelLen, o.maxModelLen, " (0: the model's)");
  checkRange(d::kKvCacheBytes, o.kvCacheBytes, " (0: automatic)");
  const auto& f = d::kKvCacheMemoryFraction;
  if (!(o.kvCacheMemoryFraction >= f.min && o.kvCacheMemoryFraction <= f.max)) {
    invalidArgument("EngineOptions.kvCacheMemoryFraction", "EngineOptions.kvCacheMemoryFraction must be in [" + std::to_string(f.min) + ", " +
                                                               std::to_string(f.max) + "], got " + std::to_string(o.kvCacheMemoryFraction));
  }
  if (o.maxNumBatchedTokens < o.maxNumSeqs) {
    invalidArgument("EngineOptions.maxNumBatchedTokens",
                    "EngineOptions.maxNumBatchedTokens (" + std::to_string(o.maxNumBatchedTokens) + ") must be >= maxNumSeqs (" +
                        std::to_string(o.maxNumSeqs) + ") so every running sequence can decode in each step");
  }
}

}  // namespace openlora
