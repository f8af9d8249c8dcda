// See token_mask.h.
#include "token_mask.h"

#include <algorithm>
#include <cmath>

#include "errors.h"

namespace openlora {

void checkTokenMask(const std::vector<uint32_t>& mask, int vocab, const std::string& field) {
  const int words = tokenMaskWords(vocab);
  if (int64_t(mask.size()) != words) {
    invalidArgument(field, field + " has " + std::to_string(mask.size()) + " words; a token mask for the model's " +
                                std::to_string(vocab) + " logits has ceil(" + std::to_string(vocab) + " / 32) = " +
                                std::to_string(words) + " 32-bit words");
  }
  const int tail = vocab & 31;  // bits of the last word that name real tokens (0: all 32)
  for (int w = 0; w < words; w++) {
    const uint32_t bits = (w == words - 1 && tail != 0) ? mask[size_t(w)] & ((1u << tail) - 1u) : mask[size_t(w)];
    if (bits != 0) return;
  }
  invalidArgument(field, field + " allows no token in [0, " + std::to_string(vocab) +
                              "): a constrained sequence needs at least one allowed token (is the grammar's matcher stuck?)");
}

void applyTokenMask(const uint32_t* mask, int vocab, float* logits) {
  for (int w = 0; w * 32 < vocab; w++) {
    const uint32_t bits = mask[w];
    if (bits == 0xffffffffu) continue;
    const int end = std::min(vocab, w * 32 + 32);
    for (int i = w * 32; i < end; i++) {
      if (!((bits >> (i & 31)) & 1u)) logits[i] = -INFINITY;
    }
  }
}

}  // namespace openlora
