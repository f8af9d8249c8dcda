// See gemm_packed.h: the packed layout of PackedMatrix (16-row panels, [panels][k][16] elements)
// and its element access. The products over it live in gemm_packed.cc.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "gemm_packed.h"

namespace openlora::cpu {

namespace {
constexpr int kP = PackedMatrix::kPanel;
}  // namespace

PackedMatrix PackedMatrix::fromF32(const float* w, int64_t n, int64_t k, DType storage) {
  return fromRows(n, k, storage, [&](int64_t r0, int64_t count, float* dst) {
    std::memcpy(dst, w + r0 * k, size_t(count * k) * sizeof(float));
  });
}

PackedMatrix PackedMatrix::fromRows(int64_t n, int64_t k, DType storage, const RowReader& read) {
  if (storage == DType::I8) throw std::invalid_argument("PackedMatrix::fromRows: int8 weights need fromI8 (and their scales)");
  PackedMatrix pm;
  pm.type_ = storage;
  pm.n_ = n;
  pm.k_ = k;
  pm.data_.assign(size_t(pm.panels() * k * kP * pm.elemSize()), 0);
  std::vector<float> rows(size_t(kP * k));
  for (int64_t p = 0; p < pm.panels(); p++) {
    const int64_t count = std::min<int64_t>(kP, n - p * kP);
    read(p * kP, count, rows.data());
    for (int64_t j = 0; j < count; j++) {
      for (int64_t i = 0; i < k; i++) {
        const size_t e = size_t((p * k + i) * kP + j);
        const float v = rows[size_t(j * k + i)];
        if (storage == DType::F32) std::memcpy(pm.data_.data() + e * 4, &v, 4);
        else {
          const uint16_t h = floatToBf16(v);
          std::memcpy(pm.data_.data() + e * 2, &h, 2);
        }
      }
    }
  }
  return pm;
}

PackedMatrix PackedMatrix::fromI8(const int8_t* w, int64_t n, int64_t k) {
  PackedMatrix pm;
  pm.type_ = DType::I8;
  pm.n_ = n;
  pm.k_ = k;
  pm.data_.assign(size_t(pm.panels() * k * kP), 0);
  for (int64_t row = 0; row < n; row++) {
    const int64_t p = row / kP, j = row % kP;
    for (int64_t i = 0; i < k; i++) pm.data_[size_t((p * k + i) * kP + j)] = uint8_t(w[row * k + i]);
  }
  return pm;
}

float PackedMatrix::at(int64_t row, int64_t col) const {
  const size_t e = size_t(((row / kP) * k_ + col) * kP + row % kP);
  switch (type_) {
    case DType::F32: {
      float v;
      std::memcpy(&v, data_.data() + e * 4, 4);
      return v;
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, data_.data() + e * 2, 2);
      return bf16ToFloat(h);
    }
    default:
      return float(int8_t(data_[e]));
  }
}

void PackedMatrix::row(int64_t r, float* dst) const {
  for (int64_t c = 0; c < k_; c++) dst[c] = at(r, c);
}

std::vector<float> PackedMatrix::unpack() const {
  std::vector<float> out(size_t(n_ * k_));
  for (int64_t r = 0; r < n_; r++)
    for (int64_t c = 0; c < k_; c++) out[size_t(r * k_ + c)] = at(r, c);
  return out;
}

}  // namespace openlora::cpu
