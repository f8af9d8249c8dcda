// See sampler.h.
#include "sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "../cpu/dispatch.h"
#include "../cpu/simd_math.h"
#include "token_mask.h"

namespace openlora {

namespace {

/** Higher probability first; equal ones by lower token id (deterministic ordering). */
bool byProbThenId(const std::pair<float, int>& a, const std::pair<float, int>& b) {
  return a.first != b.first ? a.first > b.first : a.second < b.second;
}

/**
 * sum_i exp(l[i] - mx) over [0, vocab), each term a float Cephes expf (cpu::expAvx2, ~2 ulp),
 * summed in double lanes in a fixed order (the same bits for the same row on every AVX2 CPU).
 * NOTE(why): at a 128k vocabulary the scalar double exp took ~0.8 ms a row: per generated token
 * of a logprobs request, and per prompt token of a prompt-logprobs one, on the engine thread.
 */
__attribute__((target("avx2,fma"))) double sumExpAvx2(const float* l, int vocab, float mx) {
  const __m256 m = _mm256_set1_ps(mx);
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  int i = 0;
  for (; i + 8 <= vocab; i += 8) {
    const __m256 e = cpu::expAvx2(_mm256_sub_ps(_mm256_loadu_ps(l + i), m));
    acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < vocab; i++) sum += std::exp(double(l[i]) - mx);
  return sum;
}

/** sum_i exp(l[i] - mx) in double: sumExpAvx2 where the CPU has AVX2 + FMA, else std::exp per term. */
double sumExp(const float* l, int vocab, float mx) {
  if (cpu::useAvx2()) return sumExpAvx2(l, vocab, mx);
  double sum = 0;
  for (int i = 0; i < vocab; i++) sum += std::exp(double(l[i]) - mx);
  return sum;
}

/**
 * The n largest of values[0, vocab) as (value, id), in byProbThenId's order (higher first, ties
 * to the lower id): one pass keeping the n best so far, sorted (ids ascend, so a value equal to
 * a kept one goes after it); most tokens fail the first comparison.
 */
std::vector<std::pair<float, int>> topValues(const float* values, int vocab, size_t n) {
  std::vector<std::pair<float, int>> best;
  best.reserve(n + 1);
  for (int i = 0; i < vocab; i++) {
    const float v = values[i];
    if (best.size() == n && !(v > best.back().first)) continue;
    if (best.size() == n) best.pop_back();
    const auto at = std::upper_bound(best.begin(), best.end(), v, [](float x, const std::pair<float, int>& e) { return x > e.first; });
    best.insert(at, {v, i});
  }
  return best;
}

}  // namespace

float computeLogprobs(const float* logits, int vocab, int chosen, int topN, std::vector<TokenLogprob>* top) {
  float mx = -INFINITY;
  for (int i = 0; i < vocab; i++) mx = std::max(mx, logits[i]);
  const double lse = double(mx) + std::log(sumExp(logits, vocab, mx));
  if (top && topN > 0) {
    top->clear();
    for (const auto& [v, id] : topValues(logits, vocab, size_t(std::min(topN, vocab)))) top->push_back({id, float(double(v) - lse)});
  }
  return float(double(logits[chosen]) - lse);
}

float mixtureLogprobs(const std::vector<const float*>& rows, const std::vector<double>& weights, int vocab, int chosen,
                      int topN, std::vector<TokenLogprob>* top) {
  const size_t n = rows.size();
  std::vector<double> shift(n);  // log w_i - lse_i: log of member i's probability is l_i + shift_i
  for (size_t m = 0; m < n; m++) {
    float mx = -INFINITY;
    for (int i = 0; i < vocab; i++) mx = std::max(mx, rows[m][i]);
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += std::exp(double(rows[m][i]) - mx);
    shift[m] = std::log(weights[m]) - (double(mx) + std::log(sum));
  }
  auto logp = [&](int tok) {
    double mx = -INFINITY;
    for (size_t m = 0; m < n; m++) mx = std::max(mx, double(rows[m][tok]) + shift[m]);
    double s = 0;
    for (size_t m = 0; m < n; m++) s += std::exp(double(rows[m][tok]) + shift[m] - mx);
    return mx + std::log(s);
  };
  if (top && topN > 0) {
    std::vector<float> lp(static_cast<size_t>(vocab));  // log p of every token, for ranking
    for (int i = 0; i < vocab; i++) lp[size_t(i)] = float(logp(i));
    top->clear();
    for (const auto& [v, id] : topValues(lp.data(), vocab, size_t(std::min(topN, vocab)))) top->push_back({id, v});
  }
  return float(logp(chosen));
}

Sampler::Sampler(SamplingParams params, int vocab) : p_(std::move(params)), vocab_(vocab), rng_(p_.seed) {
  if (p_.repetitionPenalty != 1.0f) {
    promptSeen_ = std::move(p_.promptIds);
    std::sort(promptSeen_.begin(), promptSeen_.end());
    promptSeen_.erase(std::unique(promptSeen_.begin(), promptSeen_.end()), promptSeen_.end());
  }
  p_.promptIds.clear();
}

void Sampler::adjust(const float* logits, std::vector<float>* out, bool suppress) const {
  out->assign(logits, logits + vocab_);
  for (const auto& [tok, bias] : p_.logitBias) (*out)[size_t(tok)] += bias;
  if (p_.repetitionPenalty != 1.0f) {
    const float r = p_.repetitionPenalty;
    // Kept finite (a -inf stays -inf): an overflow to +inf would make the softmax NaN.
    auto penalize = [&](int tok) {
      float& l = (*out)[size_t(tok)];
      l = l > 0 ? std::min(l / r, FLT_MAX) : l * r;
      if (l < -FLT_MAX && l > -INFINITY) l = -FLT_MAX;
    };
    for (int tok : promptSeen_) penalize(tok);
    for (const auto& entry : counts_) {  // once per token: generated tokens not already in the prompt
      if (!std::binary_search(promptSeen_.begin(), promptSeen_.end(), entry.first)) penalize(entry.first);
    }
  }
  if (p_.frequencyPenalty != 0.0f || p_.presencePenalty != 0.0f) {
    for (const auto& [tok, n] : counts_) (*out)[size_t(tok)] -= p_.frequencyPenalty * float(n) + p_.presencePenalty;
  }
  if (suppress && generated_ < p_.minTokens) {
    for (int tok : p_.suppressIds) (*out)[size_t(tok)] = -INFINITY;
  }
}

int Sampler::sample(const float* logits, const uint32_t* mask) {
  adjust(logits, &work_);
  if (mask) applyTokenMask(mask, vocab_, work_.data());
  if (generated_ < p_.minTokens && !p_.suppressIds.empty() &&
      std::none_of(work_.begin(), work_.end(), [](float v) { return v > -INFINITY; })) {
    // NOTE(why): a grammar that allows only the end (its mask) beats min_tokens, as in vLLM
    // where the structured-output mask is applied last: never sample from an empty set.
    adjust(logits, &work_, false);
    if (mask) applyTokenMask(mask, vocab_, work_.data());
  }
  if (p_.temperature <= 0.0f) {
    int best = 0;  // strict > keeps the lowest id among ties
    if (mask) {
      while (best < vocab_ - 1 && !tokenAllowed(mask, best)) best++;  // start at an allowed token
    }
    for (int i = 1; i < vocab_; i++) {
      if (work_[size_t(i)] > work_[size_t(best)]) best = i;
    }
    return best;
  }
  // softmax(l / T) over all tokens (max-subtracted, unnormalised: draw() scales by the sum).
  float mx = -INFINITY;
  for (float v : work_) mx = std::max(mx, v);
  cand_.resize(size_t(vocab_));
  double sum = 0;
  for (int i = 0; i < vocab_; i++) {
    const float pr = std::exp((work_[size_t(i)] - mx) / p_.temperature);
    cand_[size_t(i)] = {pr, i};
    sum += pr;
  }
  return draw(sum);
}

void Sampler::maskedMixture(const std::vector<const float*>& rows, const std::vector<double>& weights, const uint32_t* mask,
                            double T) {
  // p(t) ∝ Σ_m w_m exp(l_m(t) / T) / Z_m for allowed t, Z_m over the whole vocabulary. With
  // a_m = log w_m + (maxAllowed_m - max_m) / T - log z_m (z_m = Σ exp((l_m - max_m) / T)):
  // p(t) ∝ Σ_m exp(a_m - max_k a_k) exp((l_m(t) - maxAllowed_m) / T), every factor <= 1 and the
  // best allowed token of the best member exactly 1, so the sum never underflows to zero.
  const size_t n = rows.size();
  std::vector<double> a(n);
  std::vector<float> maxAllowed(n);
  std::vector<std::vector<float>> adjusted(n);
  for (size_t m = 0; m < n; m++) {
    adjust(rows[m], &adjusted[m]);
    const std::vector<float>& w = adjusted[m];
    float mx = -INFINITY, ma = -INFINITY;
    for (int i = 0; i < vocab_; i++) {
      mx = std::max(mx, w[size_t(i)]);
      if (tokenAllowed(mask, i)) ma = std::max(ma, w[size_t(i)]);
    }
    double z = 0;
    for (int i = 0; i < vocab_; i++) z += std::exp((double(w[size_t(i)]) - mx) / T);
    maxAllowed[m] = ma;
    a[m] = std::log(weights[m]) + (double(ma) - double(mx)) / T - std::log(z);
  }
  const double top = *std::max_element(a.begin(), a.end());
  mix_.assign(size_t(vocab_), 0.0);
  for (size_t m = 0; m < n; m++) {
    const double scale = std::exp(a[m] - top);
    const std::vector<float>& w = adjusted[m];
    for (int i = 0; i < vocab_; i++) {
      if (tokenAllowed(mask, i)) mix_[size_t(i)] += scale * std::exp((double(w[size_t(i)]) - maxAllowed[m]) / T);
    }
  }
}

int Sampler::sampleMixture(const std::vector<const float*>& rows, const std::vector<double>& weights, const uint32_t* mask) {
  const double T = p_.temperature > 0.0f ? double(p_.temperature) : 1.0;
  if (mask) {
    maskedMixture(rows, weights, mask, T);
  } else {
    mix_.assign(size_t(vocab_), 0.0);
    for (size_t m = 0; m < rows.size(); m++) {
      adjust(rows[m], &work_);
      float mx = -INFINITY;
      for (float v : work_) mx = std::max(mx, v);
      double z = 0;
      for (int i = 0; i < vocab_; i++) z += std::exp((double(work_[size_t(i)]) - mx) / T);
      const double scale = weights[m] / z;
      for (int i = 0; i < vocab_; i++) mix_[size_t(i)] += scale * std::exp((double(work_[size_t(i)]) - mx) / T);
    }
  }
  if (p_.temperature <= 0.0f) {
    int best = 0;  // strict > keeps the lowest id among ties
    for (int i = 1; i < vocab_; i++) {
      if (mix_[size_t(i)] > mix_[size_t(best)]) best = i;
    }
    return best;
  }
  cand_.resize(size_t(vocab_));
  double sum = 0;
  for (int i = 0; i < vocab_; i++) {
    cand_[size_t(i)] = {float(mix_[size_t(i)]), i};
    sum += cand_[size_t(i)].first;
  }
  return draw(sum);
}

int Sampler::draw(double sum) {
  if (p_.minP > 0.0f) {
    // min_p: drop every candidate below min_p times the largest (vLLM removes p < min_p * max p).
    float mx = 0;
    for (const auto& c : cand_) mx = std::max(mx, c.first);
    const float threshold = p_.minP * mx;
    sum = 0;
    for (auto& c : cand_) {
      if (c.first < threshold) c.first = 0;
      sum += c.first;
    }
  }
  size_t keep = cand_.size();
  const bool useTopK = p_.topK > 0 && size_t(p_.topK) < cand_.size();
  const bool useTopP = p_.topP < 1.0f;
  if (useTopK) {
    keep = size_t(p_.topK);
    std::partial_sort(cand_.begin(), cand_.begin() + long(keep), cand_.end(), byProbThenId);
  } else if (useTopP) {
    std::sort(cand_.begin(), cand_.end(), byProbThenId);
  }
  if (useTopK || useTopP) {
    double kept = 0;
    for (size_t i = 0; i < keep; i++) kept += cand_[i].first;
    if (useTopP) {
      // Nucleus over the (top-k renormalised) distribution: smallest prefix reaching topP.
      double cum = 0;
      size_t n = 0;
      while (n < keep) {
        cum += cand_[n].first;
        n++;
        if (cum / kept >= double(p_.topP)) break;
      }
      keep = std::max<size_t>(1, n);
      kept = cum;
    }
    sum = kept;
  }
  // One uniform draw in [0, sum) walked over the kept candidates (id order when unsorted).
  const double u = double(rng_() >> 11) * (1.0 / 9007199254740992.0) * sum;
  double acc = 0;
  for (size_t i = 0; i < keep; i++) {
    acc += cand_[i].first;
    if (u < acc) return cand_[i].second;
  }
  // Rounding left u at the very top: the last kept candidate with non-zero mass.
  for (size_t i = keep; i-- > 0;) {
    if (cand_[i].first > 0) return cand_[i].second;
  }
  return cand_[0].second;
}

}  // namespace openlora
