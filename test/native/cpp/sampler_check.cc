// Checks the logit processing of Sampler (native/src/sampler.cc) on hand-made logits, where the
// expected choice follows from the formulas alone: vLLM's repetition_penalty (logit / r when
// positive, logit * r otherwise, over the prompt's and the generated tokens, once per token) and
// min_p (after temperature, drop p < min_p * max p), and their order with the presence penalty;
// computeLogprobs against a naive float64 log_softmax and full sort.
// Prints one JSON line {"checks": N, "failures": [...]} and exits 0. Built and run by sampling.test.ts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../../../native/src/sampler.h"

using namespace openlora;

namespace {

int checks = 0;
std::vector<std::string> failures;

void expect(bool ok, const std::string& what) {
  checks++;
  if (!ok) failures.push_back(what);
}

}  // namespace

int main() {
  // Repetition penalty, greedy. Prompt {0, 3, 0}: token 0 (2.0 -> 1.0) and token 3 (-0.5 -> -1.0).
  {
    SamplingParams p;
    p.temperature = 0;
    p.repetitionPenalty = 2.0f;
    p.promptIds = {0, 3, 0};
    Sampler s(p, 5);
    const std::vector<float> l = {2.0f, 1.5f, -1.0f, -0.5f, 1.9f};
    expect(s.sample(l.data()) == 4, "prompt token 0 penalised: 2.0 / 2 < 1.9");
    s.observe(4);  // generated: 1.9 / 2 = 0.95 < 1.5
    expect(s.sample(l.data()) == 1, "generated token 4 penalised once");
    s.observe(4);  // twice generated: still divided once (1.9 / 2 = 0.95 < 1.0 of token 0)
    const std::vector<float> l2 = {2.0f, -3.0f, -3.0f, -3.0f, 1.9f};
    expect(s.sample(l2.data()) == 0, "a token seen twice is divided once, as one seen once in the prompt");
    // Token 3 (prompt): -0.6 * 2 = -1.2; token 4 (generated): -1.1 * 2 = -2.2; unseen 1 at -1.1 wins.
    const std::vector<float> neg = {-3.0f, -1.1f, -4.0f, -0.6f, -1.1f};
    expect(s.sample(neg.data()) == 1, "negative logits of seen tokens are multiplied");
    const std::vector<float> neg2 = {-3.0f, -1.3f, -4.0f, -0.6f, -4.0f};
    expect(s.sample(neg2.data()) == 3, "-0.6 * 2 = -1.2 still beats an unseen -1.3");
  }
  // A penalty that overflows float32 keeps the logits finite: the larger one still wins, no NaN
  // (the engine accepts any finite r > 0; the HTTP schema bounds it to [1e-6, 1e6]).
  {
    SamplingParams p;
    p.temperature = 1;
    p.repetitionPenalty = 1e-38f;
    p.promptIds = {1, 2};
    p.seed = 3;
    Sampler s(p, 4);
    const std::vector<float> l = {0.5f, 5.0f, 4.0f, -1.0f};  // 5 / 1e-38 and 4 / 1e-38 overflow
    int ok = 0;
    for (int i = 0; i < 50; i++) {
      const int t = s.sample(l.data());
      ok += t == 1 || t == 2 ? 1 : 0;
    }
    expect(ok == 50, "an overflowing repetition_penalty samples among the largest (finite) logits");
  }
  // Order with the presence penalty (vLLM: repetition first, then presence): token 1 seen,
  // logit 1.0 -> 1.0 / 2 - 0.4 = 0.1; with the other order (1.0 - 0.4) / 2 = 0.3. Token 2 at 0.2 decides.
  {
    SamplingParams p;
    p.temperature = 0;
    p.repetitionPenalty = 2.0f;
    p.presencePenalty = 0.4f;
    Sampler s(p, 3);
    s.observe(1);
    const std::vector<float> l = {-5.0f, 1.0f, 0.2f};
    expect(s.sample(l.data()) == 2, "repetition before presence");
  }
  // min_p: probabilities 0.5, 0.3, 0.15, 0.05 (T = 1). min_p 0.2 (threshold 0.1) never draws token
  // 3; min_p 0.5 (threshold 0.25) draws only 0 and 1, about 5 : 3; min_p 1 is greedy.
  {
    const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    for (float minP : {0.0f, 0.2f, 0.5f, 1.0f}) {
      SamplingParams p;
      p.temperature = 1;
      p.minP = minP;
      p.seed = 5;
      Sampler s(p, 4);
      int count[4] = {0, 0, 0, 0};
      const int draws = 4000;
      for (int i = 0; i < draws; i++) count[s.sample(l.data())]++;
      const std::string tag = "min_p " + std::to_string(minP) + ": counts " + std::to_string(count[0]) + "," + std::to_string(count[1]) + "," +
                              std::to_string(count[2]) + "," + std::to_string(count[3]);
      if (minP == 0.0f) expect(count[3] > 100 && count[2] > 400, tag);
      if (minP == 0.2f) expect(count[3] == 0 && count[2] > 400, tag);
      if (minP == 0.5f) expect(count[2] == 0 && count[3] == 0 && std::fabs(double(count[0]) / draws - 0.625) < 0.04, tag);
      if (minP == 1.0f) expect(count[0] == draws, tag);
    }
  }
  // computeLogprobs against a naive float64 log_softmax and a full sort (higher first, ties to the
  // lower id), on a 128k-token row with many ties, a tail below exp's range and a row not a
  // multiple of the vector width: logprobs within 1e-5, the same top lists.
  for (int vocab : {128256, 1001, 7}) {
    std::vector<float> l(static_cast<size_t>(vocab), 0.0f);
    uint64_t st = 0x9e3779b97f4a7c15ull + uint64_t(vocab);
    for (int i = 0; i < vocab; i++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      l[size_t(i)] = float(int(st >> 40) % 400) / 16.0f - 12.0f;  // steps of 1/16: many exact ties
    }
    l[size_t(vocab / 2)] = -200.0f;  // exp underflows: contributes nothing
    float mx = -INFINITY;
    for (float v : l) mx = std::max(mx, v);
    double sum = 0;
    for (float v : l) sum += std::exp(double(v) - double(mx));
    const double lse = double(mx) + std::log(sum);
    std::vector<int> order(static_cast<size_t>(vocab), 0);
    for (int i = 0; i < vocab; i++) order[size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[size_t(a)] > l[size_t(b)]; });
    for (int topN : {0, 1, 5, 20}) {
      std::vector<TokenLogprob> top;
      const int chosen = vocab / 3;
      const float got = computeLogprobs(l.data(), vocab, chosen, topN, &top);
      const std::string at = "computeLogprobs vocab " + std::to_string(vocab) + " topN " + std::to_string(topN);
      expect(std::fabs(double(got) - (double(l[size_t(chosen)]) - lse)) < 1e-5, at + ": chosen logprob");
      const size_t n = size_t(std::min(topN, vocab));
      bool same = top.size() == n;
      for (size_t j = 0; same && j < n; j++) {
        same = top[j].token == order[j] && std::fabs(double(top[j].logprob) - (double(l[size_t(order[j])]) - lse)) < 1e-5;
      }
      expect(same, at + ": top list (ties to the lower id)");
    }
  }

  std::printf("{\"checks\": %d, \"failures\": [", checks);
  for (size_t i = 0; i < failures.size(); i++) std::printf("%s\"%s\"", i ? ", " : "", failures[i].c_str());
  std::printf("]}\n");
  return 0;
}
