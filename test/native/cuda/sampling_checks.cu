// CUDA kernel checks: the sampling kernel (penalties, bias, top-k / top-p, token masks, logprobs, draws). Each kernel against a naive CPU loop on random inputs.
#include "check_util.cuh"
#include "../../../native/cuda/sampling.cuh"

namespace openlora::cuda_checks {

namespace {

// Sampling

void checkSampling(int vocab) {
  // Batch: 0 greedy, 1 top_k = 1 (must equal greedy of processed logits), 2 top_k 50 + top_p 0.9,
  // 3 top_p 0.5 with penalties and bias, 4 plain temperature 0.7; plus a ties row (5, greedy).
  const int S = 6, N = 5;
  auto logits = randomVec(size_t(S) * vocab, -8, 8);
  for (int i = 0; i < vocab; i++) logits[size_t(5) * vocab + i] = float(i % 7);  // ties at 6
  std::vector<float> temp = {0, 1.0f, 0.8f, 1.2f, 0.7f, 0};
  std::vector<int32_t> topk = {0, 1, 50, 0, 0, 0};
  std::vector<float> topp = {1, 1, 0.9f, 0.5f, 1, 1};
  std::vector<float> pres = {0, 0, 0, 0.5f, 0, 0}, freq = {0, 0, 0, 0.3f, 0, 0};
  std::vector<int32_t> penPtr = {0, 0, 0, 0, 2, 2, 2}, penTok = {7, 9}, penCnt = {3, 1};
  std::vector<int32_t> biasPtr = {0, 0, 1, 1, 2, 2, 2}, biasTok = {11, 13};  // seq 1: 11 +100; seq 3: 13 +5
  std::vector<float> biasVal = {100.0f, 5.0f};
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5, 6}, steps = {0, 0, 9, 9, 9, 0};
  std::unique_ptr<Dev> dL(uploadRaw(logits)), dT(uploadRaw(temp)), dK(uploadRaw(topk)), dP(uploadRaw(topp)),
      dPr(uploadRaw(pres)), dFr(uploadRaw(freq)), dPp(uploadRaw(penPtr)), dPt(uploadRaw(penTok)), dPc(uploadRaw(penCnt)),
      dBp(uploadRaw(biasPtr)), dBt(uploadRaw(biasTok)), dBv(uploadRaw(biasVal)), dSe(uploadRaw(seeds)), dSt(uploadRaw(steps)),
      dOut(new Dev(S * 4)), dLp(new Dev(S * 4)), dTt(new Dev(S * N * 4)), dTl(new Dev(S * N * 4)),
      dWs(new Dev(sampling_workspace_bytes(S, vocab)));
  SamplingBatch b;
  b.num_seqs = S, b.vocab = vocab, b.logits = dL->as<float>(), b.ld_logits = vocab, b.temperature = dT->as<float>();
  b.top_k = dK->as<int32_t>(), b.top_p = dP->as<float>(), b.presence_penalty = dPr->as<float>();
  b.frequency_penalty = dFr->as<float>(), b.penalty_ptr = dPp->as<int32_t>(), b.penalty_tokens = dPt->as<int32_t>();
  b.penalty_counts = dPc->as<int32_t>(), b.bias_ptr = dBp->as<int32_t>(), b.bias_tokens = dBt->as<int32_t>();
  b.bias_values = dBv->as<float>(), b.seeds = dSe->as<uint64_t>(), b.steps = dSt->as<uint64_t>();
  b.max_top_logprobs = N, b.out_tokens = dOut->as<int32_t>(), b.out_logprobs = dLp->as<float>();
  b.out_top_tokens = dTt->as<int32_t>(), b.out_top_logprobs = dTl->as<float>(), b.workspace = dWs->as<float>();
  if (!launched("sample", launch_sample(b, nullptr))) return;
  auto tok = downloadRaw<int32_t>(dOut.get(), S);
  auto lp = downloadRaw<float>(dLp.get(), S);
  auto tt = downloadRaw<int32_t>(dTt.get(), S * N);
  auto tl = downloadRaw<float>(dTl.get(), S * N);
  if (!launched("sample (again)", launch_sample(b, nullptr))) return;
  auto tok2 = downloadRaw<int32_t>(dOut.get(), S);
  bool ok = true;
  std::string why;
  std::vector<float> lpRef, tlRef, tlGot;
  for (int s = 0; s < S; s++) {
    const float* raw = logits.data() + size_t(s) * vocab;
    std::vector<float> w(raw, raw + vocab);
    for (int e = biasPtr[size_t(s)]; e < biasPtr[size_t(s) + 1]; e++) w[size_t(biasTok[size_t(e)])] += biasVal[size_t(e)];
    for (int e = penPtr[size_t(s)]; e < penPtr[size_t(s) + 1]; e++)
      w[size_t(penTok[size_t(e)])] -= freq[size_t(s)] * float(penCnt[size_t(e)]) + pres[size_t(s)];
    double mx = *std::max_element(raw, raw + vocab), sum = 0;
    for (int i = 0; i < vocab; i++) sum += std::exp(double(raw[i]) - mx);
    const double lse = mx + std::log(sum);
    // Allowed set: (prob desc, id asc) order, top_k prefix, then top_p prefix.
    std::vector<int> ord(static_cast<size_t>(vocab));
    std::iota(ord.begin(), ord.end(), 0);
    std::stable_sort(ord.begin(), ord.end(), [&](int i, int j) { return w[size_t(i)] > w[size_t(j)]; });
    size_t keep = temp[size_t(s)] <= 0 ? 1 : size_t(vocab);
    if (topk[size_t(s)] > 0) keep = std::min(keep, size_t(topk[size_t(s)]));
    if (temp[size_t(s)] > 0 && topp[size_t(s)] < 1) {
      const double wm = w[size_t(ord[0])];
      double kept = 0, cum = 0;
      for (size_t i = 0; i < keep; i++) kept += std::exp((w[size_t(ord[i])] - wm) / temp[size_t(s)]);
      size_t n = 0;
      while (n < keep) {
        cum += std::exp((w[size_t(ord[n])] - wm) / temp[size_t(s)]);
        n++;
        if (cum / kept >= topp[size_t(s)]) break;
      }
      keep = std::max<size_t>(1, n) + 1;  // +1: the boundary element may go either way in fp32 sums
    }
    const bool inSet = std::find(ord.begin(), ord.begin() + long(keep), tok[size_t(s)]) != ord.begin() + long(keep);
    if (!inSet) ok = false, why += " seq" + std::to_string(s) + ": token " + std::to_string(tok[size_t(s)]) + " outside the allowed set;";
    if (tok[size_t(s)] != tok2[size_t(s)]) ok = false, why += " seq" + std::to_string(s) + " not deterministic;";
    lpRef.push_back(float(raw[tok[size_t(s)]] - lse));
    std::vector<int> rord(static_cast<size_t>(vocab));
    std::iota(rord.begin(), rord.end(), 0);
    std::stable_sort(rord.begin(), rord.end(), [&](int i, int j) { return raw[i] > raw[j]; });
    for (int n = 0; n < N; n++) {
      if (tt[size_t(s) * N + n] != rord[size_t(n)])
        ok = false, why += " seq" + std::to_string(s) + " top" + std::to_string(n) + " id " + std::to_string(tt[size_t(s) * N + n]) +
                           " != " + std::to_string(rord[size_t(n)]) + ";";
      tlRef.push_back(float(raw[rord[size_t(n)]] - lse));
      tlGot.push_back(tl[size_t(s) * N + n]);
    }
  }
  if (tok[0] != int(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin())) ok = false, why += " greedy != argmax;";
  if (tok[1] != 11) ok = false, why += " top_k=1 with bias +100 on 11 did not pick 11;";
  if (tok[5] != 6) ok = false, why += " greedy tie did not pick the lowest id (6);";
  reportBool("sample selection vocab " + std::to_string(vocab), ok, ok ? "greedy, ties, bias, top-k/top-p sets, determinism" : why);
  report("sample logprobs vocab " + std::to_string(vocab), lp, lpRef, 1e-4f, 1e-4f);
  report("sample top logprobs vocab " + std::to_string(vocab), tlGot, tlRef, 1e-4f, 1e-4f);
}

/**
 * Token masks (constrained decoding): 64 rows over one logits row, each with its own random
 * allowed set (~1/16 of the vocabulary, token 3 * row always allowed), greedy / temperature /
 * top_k 3 / top_p 0.5 by row, plus unmasked rows (mask_index -1). Every token must be allowed,
 * greedy must be the argmax of the raw logits over the allowed set, logprobs must stay unmasked.
 */
void checkSamplingMasked(int vocab) {
  const int S = 64, words = (vocab + 31) / 32;
  auto row = randomVec(size_t(vocab), -8, 8);
  std::vector<float> logits, temp, topp;
  std::vector<int32_t> topk, index;
  std::vector<uint32_t> masks;
  std::vector<uint64_t> seeds, steps;
  for (int s = 0; s < S; s++) {
    logits.insert(logits.end(), row.begin(), row.end());
    temp.push_back(s % 4 == 0 ? 0.0f : 1.0f);
    topk.push_back(s % 4 == 2 ? 3 : 0);
    topp.push_back(s % 4 == 3 ? 0.5f : 1.0f);
    seeds.push_back(uint64_t(s)), steps.push_back(uint64_t(s));
    index.push_back(s % 8 == 7 ? -1 : int32_t(masks.size() / size_t(words)));
    if (index.back() < 0) continue;
    std::vector<uint32_t> m(size_t(words), 0u);
    for (int i = 0; i < vocab; i++)
      if (g_rng() % 16 == 0 || i == (3 * s) % vocab) m[size_t(i >> 5)] |= 1u << (i & 31);
    masks.insert(masks.end(), m.begin(), m.end());
  }
  std::unique_ptr<Dev> dL(uploadRaw(logits)), dT(uploadRaw(temp)), dK(uploadRaw(topk)), dP(uploadRaw(topp)), dM(uploadRaw(masks)),
      dI(uploadRaw(index)), dSe(uploadRaw(seeds)), dSt(uploadRaw(steps)), dOut(new Dev(S * 4)), dLp(new Dev(S * 4)),
      dWs(new Dev(sampling_workspace_bytes(S, vocab)));
  SamplingBatch b;
  b.num_seqs = S, b.vocab = vocab, b.logits = dL->as<float>(), b.ld_logits = vocab, b.temperature = dT->as<float>();
  b.top_k = dK->as<int32_t>(), b.top_p = dP->as<float>(), b.seeds = dSe->as<uint64_t>(), b.steps = dSt->as<uint64_t>();
  b.token_masks = dM->as<uint32_t>(), b.mask_index = dI->as<int32_t>(), b.mask_words = words;
  b.out_tokens = dOut->as<int32_t>(), b.out_logprobs = dLp->as<float>(), b.workspace = dWs->as<float>();
  if (!launched("sample masked", launch_sample(b, nullptr))) return;
  auto tok = downloadRaw<int32_t>(dOut.get(), S);
  auto lp = downloadRaw<float>(dLp.get(), S);
  double mx = *std::max_element(row.begin(), row.end()), sum = 0;
  for (float v : row) sum += std::exp(double(v) - mx);
  const double lse = mx + std::log(sum);
  bool ok = true;
  std::string why;
  std::vector<float> lpRef;
  for (int s = 0; s < S; s++) {
    const int t = tok[size_t(s)];
    lpRef.push_back(t >= 0 && t < vocab ? float(row[size_t(t)] - lse) : 0.0f);
    if (index[size_t(s)] < 0) continue;
    const uint32_t* m = masks.data() + size_t(index[size_t(s)]) * words;
    auto allowed = [&](int i) { return ((m[i >> 5] >> (i & 31)) & 1u) != 0; };
    if (t < 0 || t >= vocab || !allowed(t)) ok = false, why += " seq" + std::to_string(s) + ": token " + std::to_string(t) + " not allowed;";
    if (temp[size_t(s)] > 0) continue;
    int best = -1;
    for (int i = 0; i < vocab; i++)
      if (allowed(i) && (best < 0 || row[size_t(i)] > row[size_t(best)])) best = i;
    if (t != best) ok = false, why += " seq" + std::to_string(s) + ": greedy " + std::to_string(t) + " != masked argmax " + std::to_string(best) + ";";
  }
  reportBool("sample masked vocab " + std::to_string(vocab), ok, ok ? "every token allowed, greedy = argmax over the allowed set" : why);
  report("sample masked logprobs (unmasked) vocab " + std::to_string(vocab), lp, lpRef, 1e-4f, 1e-4f);
}


/** Frequencies of 20000 draws (one sequence each, steps 0..) from an 8-token distribution. */
void checkSamplingDistribution() {
  const int V = 8, S = 20000;
  const std::vector<float> row = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, -3.0f, 1.5f, 0.25f};
  std::vector<float> logits;
  for (int s = 0; s < S; s++) logits.insert(logits.end(), row.begin(), row.end());
  std::vector<float> temp(size_t(S), 1.0f);
  std::vector<uint64_t> seeds(size_t(S), 42), steps(static_cast<size_t>(S));
  std::iota(steps.begin(), steps.end(), uint64_t(0));
  std::unique_ptr<Dev> dL(uploadRaw(logits)), dT(uploadRaw(temp)), dSe(uploadRaw(seeds)), dSt(uploadRaw(steps)),
      dOut(new Dev(size_t(S) * 4)), dWs(new Dev(sampling_workspace_bytes(S, V)));
  SamplingBatch b;
  b.num_seqs = S, b.vocab = V, b.logits = dL->as<float>(), b.ld_logits = V, b.temperature = dT->as<float>();
  b.seeds = dSe->as<uint64_t>(), b.steps = dSt->as<uint64_t>(), b.out_tokens = dOut->as<int32_t>(), b.workspace = dWs->as<float>();
  if (!launched("sample distribution", launch_sample(b, nullptr))) return;
  auto tok = downloadRaw<int32_t>(dOut.get(), size_t(S));
  std::vector<float> freq(size_t(V), 0.0f), p(static_cast<size_t>(V));
  double z = 0;
  for (int i = 0; i < V; i++) z += std::exp(double(row[size_t(i)]));
  for (int i = 0; i < V; i++) p[size_t(i)] = float(std::exp(double(row[size_t(i)])) / z);
  for (int t : tok)
    if (t >= 0 && t < V) freq[size_t(t)] += 1.0f / S;
  report("sample frequencies (20000 draws, 8 tokens)", freq, p, 0.012f, 0.0f);  // ~4 sigma at p = 0.4
}

}  // namespace

void runSamplingChecks(const Shape& s) {
  checkSampling(s.vocab);
  checkSamplingMasked(s.vocab);
}

void runSamplingDistributionCheck() { checkSamplingDistribution(); }

}  // namespace openlora::cuda_checks
