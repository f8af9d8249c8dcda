// See staging.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "staging.cuh"

namespace openlora::cuda {

size_t StepStaging::reserveWords(size_t n, bool align8) {
  if (align8 && (host_.size() & 1)) host_.push_back(0);
  const size_t off = host_.size();
  host_.resize(off + n, 0);
  return off;
}

void StepStaging::build(const StepPlan& plan, int poolBlocks, int blockSize, int loraSlots, const std::vector<float>& invFreq,
                        const std::vector<float>& invFreqLong, int maxWindow) {
  const int E = plan.numEntries(), T = plan.numRows(), R = plan.numLogitRows(), maxBlocks = plan.maxBlocks();
  const std::vector<int32_t>& rows = plan.entryRows();
  // Attention split: leading single-token entries -> decode kernel; the rest -> prefill kernel
  // (it also handles single-token entries that come after a multi-token one).
  numDecode_ = 0;
  while (numDecode_ < E && rows[size_t(numDecode_) + 1] - rows[size_t(numDecode_)] == 1) numDecode_++;
  maxCtxDecode_ = 1;
  maxQLen_ = 1;
  for (int s = 0; s < E; s++) {
    if (s < numDecode_) maxCtxDecode_ = std::max(maxCtxDecode_, plan.contextLens()[size_t(s)]);
    else maxQLen_ = std::max(maxQLen_, rows[size_t(s) + 1] - rows[size_t(s)]);
  }

  // --- Step arrays (4-byte words; int64 slot mapping at an even word).
  host_.clear();
  slots = reserveWords(size_t(T) * 2, true);
  ids = reserveWords(size_t(T), false);
  pos = reserveWords(size_t(T), false);
  tables = reserveWords(size_t(E) * maxBlocks, false);
  ctx = reserveWords(size_t(E), false);
  cuq = reserveWords(size_t(E - numDecode_) + 1, false);
  gather = reserveWords(size_t(R), false);
  const std::vector<float>& dyn = plan.dynamicInvFreqs();
  const size_t half = invFreq.size();
  ropeTables = reserveWords(2 * half + dyn.size(), false);
  ropeIndex = reserveWords(size_t(T), false);
  std::memcpy(&host_[slots], plan.slotMapping().data(), size_t(T) * 8);
  std::memcpy(&host_[ids], plan.tokens().data(), size_t(T) * 4);
  std::memcpy(&host_[pos], plan.positions().data(), size_t(T) * 4);
  for (int s = 0; s < E; s++) {
    const int32_t* table = plan.blockTables().data() + int64_t(s) * maxBlocks;
    const int ctxLen = plan.contextLens()[size_t(s)];
    const int need = (ctxLen + blockSize - 1) / blockSize;
    // The first position any query of this entry sees (its first row's window start).
    const int firstPos = plan.positions()[size_t(rows[size_t(s)])];
    const int seen = maxWindow > 0 ? std::max(0, firstPos - maxWindow + 1) : 0;
    for (int b = 0; b < need; b++) {
      const bool dropped = table[b] < 0 && (b + 1) * blockSize <= seen;  // never read by the kernels
      if (!dropped && (table[b] < 0 || table[b] >= poolBlocks)) {
        throw std::runtime_error("CUDA forward: block id " + std::to_string(table[b]) + " outside the attached pool");
      }
    }
  }
  std::memcpy(&host_[tables], plan.blockTables().data(), size_t(E) * maxBlocks * 4);
  std::memcpy(&host_[ctx], plan.contextLens().data(), size_t(E) * 4);
  int32_t* cu = reinterpret_cast<int32_t*>(&host_[cuq]);
  for (int s = numDecode_; s < E; s++) cu[s - numDecode_ + 1] = cu[s - numDecode_] + rows[size_t(s) + 1] - rows[size_t(s)];
  std::memcpy(&host_[gather], plan.logitRows().data(), size_t(R) * 4);
  // RoPE tables in StepPlan's numbering: 0 default, 1 long (the default again without longrope), 2 + j dynamic j.
  std::memcpy(&host_[ropeTables], invFreq.data(), half * 4);
  std::memcpy(&host_[ropeTables + half], (invFreqLong.empty() ? invFreq : invFreqLong).data(), half * 4);
  if (!dyn.empty()) std::memcpy(&host_[ropeTables + 2 * half], dyn.data(), dyn.size() * 4);
  for (int s = 0; s < E; s++) {
    for (int r = rows[size_t(s)]; r < rows[size_t(s) + 1]; r++) host_[ropeIndex + size_t(r)] = uint32_t(plan.ropeTables()[size_t(s)]);
  }

  // --- LoRA term arrays of every (layer, module), from the plan's spans.
  const int L = plan.numLayers();
  lora_.assign(size_t(L) * kNumLoraModules, LoraLaunch());
  maxTerms_ = 0;
  const bool decodeOnly = (T == E);
  for (int l = 0; plan.anyLora() && l < L; l++) {
    for (int m = 0; m < kNumLoraModules; m++) {
      terms_.clear();
      for (const LoraSpan* sp = plan.spansBegin(l, LoraModule(m)); sp != plan.spansEnd(l, LoraModule(m)); ++sp) {
        if (sp->slot < 0 || sp->slot >= loraSlots) {
          throw std::runtime_error("CUDA forward: adapter slot " + std::to_string(sp->slot) + " has no device pool (reserveAdapters(" +
                                   std::to_string(loraSlots) + ", ...))");
        }
        for (int r = sp->rowBegin; r < sp->rowEnd; r++) terms_.push_back(Term{r, sp->slot, sp->scale});
      }
      if (terms_.empty()) continue;
      std::stable_sort(terms_.begin(), terms_.end(), [](const Term& a, const Term& b) { return a.slot < b.slot; });
      LoraLaunch& p = lora_[size_t(l) * kNumLoraModules + size_t(m)];
      const int n = int(terms_.size());
      p.numTerms = n;
      maxTerms_ = std::max(maxTerms_, n);
      p.termRows = reserveWords(size_t(n), false);
      p.termSlot = reserveWords(size_t(n), false);
      p.termScale = reserveWords(size_t(n), false);
      for (int t = 0; t < n; t++) {
        host_[p.termRows + t] = uint32_t(terms_[size_t(t)].row);
        host_[p.termSlot + t] = uint32_t(terms_[size_t(t)].slot);
        std::memcpy(&host_[p.termScale + t], &terms_[size_t(t)].scale, 4);
      }
      // Segments: runs of one slot (terms are sorted by slot).
      segStart_.clear();
      segSlot_.clear();
      for (int t = 0; t < n; t++) {
        if (t == 0 || terms_[size_t(t)].slot != terms_[size_t(t - 1)].slot) {
          segStart_.push_back(t);
          segSlot_.push_back(terms_[size_t(t)].slot);
        }
      }
      segStart_.push_back(n);
      p.numSegs = int(segSlot_.size());
      for (int g = 0; g < p.numSegs; g++) p.maxSegLen = std::max(p.maxSegLen, segStart_[size_t(g + 1)] - segStart_[size_t(g)]);
      p.segStart = reserveWords(segStart_.size(), false);
      p.segSlot = reserveWords(segSlot_.size(), false);
      std::memcpy(&host_[p.segStart], segStart_.data(), segStart_.size() * 4);
      std::memcpy(&host_[p.segSlot], segSlot_.data(), segSlot_.size() * 4);
      // CSR by row over term ids (term order = tmp row order).
      rowCount_.assign(size_t(T) + 1, 0);
      for (const Term& t : terms_) rowCount_[size_t(t.row) + 1]++;
      bool oneEach = true;
      for (int r = 0; r < T; r++) oneEach = oneEach && rowCount_[size_t(r) + 1] <= 1;
      for (int r = 0; r < T; r++) rowCount_[size_t(r) + 1] += rowCount_[size_t(r)];
      p.rowPtr = reserveWords(size_t(T) + 1, false);
      std::memcpy(&host_[p.rowPtr], rowCount_.data(), (size_t(T) + 1) * 4);
      p.rowTerms = reserveWords(size_t(n), false);
      fill_.assign(rowCount_.begin(), rowCount_.end() - 1);
      for (int t = 0; t < n; t++) host_[p.rowTerms + size_t(fill_[size_t(terms_[size_t(t)].row)]++)] = uint32_t(t);
      p.bgmv = decodeOnly && oneEach;
    }
  }
}

void StepStaging::upload(cudaStream_t stream) {
  const size_t bytes = host_.size() * 4;
  void* pinned = pinned_.ensure(bytes, "cudaHostAlloc (step staging)");
  dev_.ensure(bytes, "cudaMalloc (step staging)");
  std::memcpy(pinned, host_.data(), bytes);
  check(cudaMemcpyAsync(dev_.p, pinned, bytes, cudaMemcpyHostToDevice, stream), "upload step inputs");
}

}  // namespace openlora::cuda
