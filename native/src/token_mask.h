// Allowed-token bitmasks for constrained (structured-output) decoding, in xgrammar's layout:
// a mask over a vocabulary of V tokens is ceil(V / 32) 32-bit words; token i is allowed when bit
// (i & 31) of word (i >> 5) is set. V is the model's logits width (config vocab_size); bits at
// or beyond V in the last word are ignored. The engine side of the hand-off is described in
// native/README.md ("Constrained decoding").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace openlora {

/** Words of a token mask over `vocab` tokens: ceil(vocab / 32). */
inline int tokenMaskWords(int vocab) { return (vocab + 31) / 32; }

/** Whether `token` is allowed by `mask` ([tokenMaskWords(vocab)] words). */
inline bool tokenAllowed(const uint32_t* mask, int token) { return ((mask[token >> 5] >> (token & 31)) & 1u) != 0; }

/**
 * Check a mask for a model of `vocab` tokens: exactly tokenMaskWords(vocab) words and at least
 * one allowed token in [0, vocab).
 * @param field the caller's name for the mask, for the message (e.g. "SequenceParams.tokenMask").
 * @throws Error (errors.h) invalid_argument naming `field`, the expected and actual length, or that no token is allowed.
 */
void checkTokenMask(const std::vector<uint32_t>& mask, int vocab, const std::string& field);

/** logits[i] = -inf for every token i in [0, vocab) that `mask` disallows. @param logits [vocab]. */
void applyTokenMask(const uint32_t* mask, int vocab, float* logits);

}  // namespace openlora
