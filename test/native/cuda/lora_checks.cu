// CUDA kernel checks: sgmv and bgmv (LoRA shrink / expand). Each kernel against a naive CPU loop on random inputs.
#include "check_util.cuh"
#include "../../../native/cuda/bgmv.cuh"
#include "../../../native/cuda/sgmv.cuh"

namespace openlora::cuda_checks {

namespace {

// LoRA

void checkLora(const Shape& s, DType t, int in, int out) {
  const int rows = 24, slots = 5, R = s.rank;
  std::vector<int32_t> rank = {R, R / 2, R, 4, R};
  auto a = randomVec(size_t(slots) * R * in, -0.1f, 0.1f), bt = randomVec(size_t(slots) * R * out, -0.1f, 0.1f);
  for (int sl = 0; sl < slots; sl++)  // garbage (not zero) past each slot's rank: slot_rank must ignore it
    for (int r = rank[size_t(sl)]; r < R; r++) a[(size_t(sl) * R + r) * in] = 77.0f, bt[(size_t(sl) * R + r) * out] = 77.0f;
  auto x = randomVec(size_t(rows) * in), y0 = randomVec(size_t(rows) * out);
  roundAll(t, a), roundAll(t, bt), roundAll(t, x), roundAll(t, y0);
  // Terms: rows 0-9 a prefill segment on slot 1; rows 4-9 also slot 3 (a `cat` merge); rows
  // 12-23 decode tokens on mixed slots, row 15 and 20 without adapters, rows 10-11 none.
  std::vector<int32_t> termRow, termSlot;
  std::vector<float> termScale;
  for (int r = 0; r < 10; r++) termRow.push_back(r), termSlot.push_back(1), termScale.push_back(0.6f * 2.0f);
  for (int r = 4; r < 10; r++) termRow.push_back(r), termSlot.push_back(3), termScale.push_back(0.4f * 0.5f);
  for (int r = 12; r < rows; r++)
    if (r != 15 && r != 20) termRow.push_back(r), termSlot.push_back(int(g_rng() % slots)), termScale.push_back(1.0f + 0.1f * float(r));
  const int T = int(termRow.size());
  // SGMV segments: group terms by slot (stable), as cpu::LoraBatch does.
  std::vector<int> order(static_cast<size_t>(T));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int i, int j) { return termSlot[size_t(i)] < termSlot[size_t(j)]; });
  std::vector<int32_t> sRow, sSlot, segStart, segSlot;
  std::vector<float> sScale;
  int maxSeg = 0;
  for (int i = 0; i < T; i++) {
    const int o = order[size_t(i)];
    if (i == 0 || termSlot[size_t(o)] != sSlot.back()) segStart.push_back(i), segSlot.push_back(termSlot[size_t(o)]);
    sRow.push_back(termRow[size_t(o)]), sSlot.push_back(termSlot[size_t(o)]), sScale.push_back(termScale[size_t(o)]);
  }
  segStart.push_back(T);
  for (size_t g = 0; g + 1 < segStart.size(); g++) maxSeg = std::max(maxSeg, segStart[g + 1] - segStart[g]);
  std::vector<int32_t> rowPtr(size_t(rows) + 1, 0), rowTerms;
  for (int r = 0; r < rows; r++) {
    for (int i = 0; i < T; i++)
      if (sRow[size_t(i)] == r) rowTerms.push_back(i);
    rowPtr[size_t(r) + 1] = int(rowTerms.size());
  }
  // Reference.
  std::vector<float> tmpRef(size_t(T) * R, 0.0f), yRef = y0;
  std::vector<double> yAcc(y0.size(), 0.0);
  for (int i = 0; i < T; i++) {
    const int sl = sSlot[size_t(i)], rk = rank[size_t(sl)];
    for (int r = 0; r < rk; r++) {
      double d = 0;
      for (int k = 0; k < in; k++) d += double(x[size_t(sRow[size_t(i)]) * in + k]) * a[(size_t(sl) * R + r) * in + k];
      tmpRef[size_t(i) * R + r] = float(d);
    }
    for (int o = 0; o < out; o++) {
      double acc = 0;
      for (int r = 0; r < rk; r++) acc += double(tmpRef[size_t(i) * R + r]) * bt[(size_t(sl) * R + r) * out + o];
      yAcc[size_t(sRow[size_t(i)]) * out + o] += sScale[size_t(i)] * acc;
    }
  }
  for (size_t i = 0; i < yRef.size(); i++) yRef[i] = float(y0[i] + yAcc[i]);
  std::unique_ptr<Dev> dX(upload(t, x)), dA(upload(t, a)), dB(upload(t, bt)), dY(upload(t, y0)), dTmp(new Dev(size_t(T) * R * 4)),
      dRank(uploadRaw(rank)), dRow(uploadRaw(sRow)), dSl(uploadRaw(sSlot)), dSc(uploadRaw(sScale)), dSeg(uploadRaw(segStart)),
      dSegSl(uploadRaw(segSlot)), dRp(uploadRaw(rowPtr)), dRt(uploadRaw(rowTerms));
  const std::string tag = std::string(dtypeName(t)) + " " + s.name + " " + std::to_string(in) + "->" + std::to_string(out);
  const float tolT = t == DType::F32 ? 1e-4f : 2e-2f;
  if (launched("sgmv_shrink", launch_sgmv_shrink(dTmp->as<float>(), dX->p, in, dA->p, dRank->as<int32_t>(), dRow->as<int32_t>(),
                                                 dSeg->as<int32_t>(), dSegSl->as<int32_t>(), int(segSlot.size()), maxSeg, T,
                                                 in, R, t, nullptr)))
    report("sgmv_shrink " + tag, download(DType::F32, dTmp.get(), tmpRef.size()), tmpRef, 1e-3f, tolT);
  if (launched("sgmv_expand", launch_sgmv_expand(dY->p, out, dTmp->as<float>(), dB->p, dRank->as<int32_t>(), dRp->as<int32_t>(),
                                                 dRt->as<int32_t>(), dSl->as<int32_t>(), dSc->as<float>(), rows, out, R, t,
                                                 nullptr)))
    report("sgmv_expand " + tag, download(t, dY.get(), yRef.size()), yRef, 1e-2f, tolT);
  // BGMV: the decode terms only (one per row), shrink + expand.
  std::vector<int32_t> bRow, bSlot;
  std::vector<float> bScale;
  for (int i = 0; i < T; i++)
    if (sRow[size_t(i)] >= 12) bRow.push_back(sRow[size_t(i)]), bSlot.push_back(sSlot[size_t(i)]), bScale.push_back(sScale[size_t(i)]);
  bSlot[0] = -1;  // a term without a slot: contributes nothing
  const int BT = int(bRow.size());
  std::vector<float> bTmpRef(size_t(BT) * R, 0.0f), bY = y0;
  for (int i = 0; i < BT; i++) {
    const int sl = bSlot[size_t(i)];
    if (sl < 0) continue;
    for (int r = 0; r < rank[size_t(sl)]; r++) {
      double d = 0;
      for (int k = 0; k < in; k++) d += double(x[size_t(bRow[size_t(i)]) * in + k]) * a[(size_t(sl) * R + r) * in + k];
      bTmpRef[size_t(i) * R + r] = float(d);
    }
    for (int o = 0; o < out; o++) {
      double acc = 0;
      for (int r = 0; r < rank[size_t(sl)]; r++) acc += double(bTmpRef[size_t(i) * R + r]) * bt[(size_t(sl) * R + r) * out + o];
      bY[size_t(bRow[size_t(i)]) * out + o] = float(y0[size_t(bRow[size_t(i)]) * out + o] + bScale[size_t(i)] * acc);
    }
  }
  std::unique_ptr<Dev> dY2(upload(t, y0)), dBr(uploadRaw(bRow)), dBs(uploadRaw(bSlot)), dBc(uploadRaw(bScale)),
      dBt(new Dev(size_t(BT) * R * 4));
  if (launched("bgmv_shrink", launch_bgmv_shrink(dBt->as<float>(), dX->p, in, dA->p, dRank->as<int32_t>(), dBr->as<int32_t>(),
                                                 dBs->as<int32_t>(), BT, in, R, t, nullptr)))
    report("bgmv_shrink " + tag, download(DType::F32, dBt.get(), bTmpRef.size()), bTmpRef, 1e-3f, tolT);
  if (launched("bgmv_expand", launch_bgmv_expand(dY2->p, out, dBt->as<float>(), dB->p, dRank->as<int32_t>(), dBr->as<int32_t>(),
                                                 dBs->as<int32_t>(), dBc->as<float>(), BT, out, R, t, nullptr)))
    report("bgmv_expand " + tag, download(t, dY2.get(), bY.size()), bY, 1e-2f, tolT);
}

}  // namespace

void runLoraChecks(const Shape& s) {
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    checkLora(s, t, s.hidden, s.heads * s.headDim);    // q_proj
    checkLora(s, t, s.hidden, s.kvHeads * s.headDim);  // k/v_proj
  }
  checkLora(s, DType::BF16, s.inter, s.hidden);  // down_proj
  checkLora(s, DType::BF16, s.hidden, s.inter);  // gate/up_proj
}

}  // namespace openlora::cuda_checks
