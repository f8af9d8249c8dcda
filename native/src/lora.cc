// See lora.h. Tensor layout follows PEFT's LoraLayer: lora_A.weight [r, in], lora_B.weight [out, r].
#include "lora.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <tuple>

#include "dtype.h"
#include "errors.h"
#include "safetensors.h"

namespace openlora {

namespace {

/** A bad_file Error: the adapter file does not match its spec or the base model. */
[[noreturn]] void fail(const std::string& msg) { raise(ErrorCode::BadFile, msg); }

/** Transpose a [r, c] row-major matrix into [c, r]. */
template <class T>
std::vector<T> transposed2d(const std::vector<T>& in, int64_t r, int64_t c) {
  std::vector<T> out(in.size());
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++) out[size_t(j * r + i)] = in[size_t(i * c + j)];
  return out;
}

/**
 * Read a 2-D tensor [rows, cols] into `m` in its file dtype (F32, or BF16 / F16 kept 16-bit),
 * transposing from [cols, rows] when `transposed`.
 * @throws std::runtime_error when a value is NaN or Inf.
 */
void readMatrix(const TensorView& t, bool transposed, LoraMatrix& m) {
  const int64_t r = t.shape[0], c = t.shape[1];
  if (t.dtype == DType::F32) {
    std::vector<float> raw = t.toF32();
    for (float v : raw) {
      if (!std::isfinite(v)) fail(t.file + ": tensor " + t.name + " contains NaN or Inf");
    }
    m.assignF32(transposed ? transposed2d(raw, r, c) : std::move(raw));
    return;
  }
  std::vector<uint16_t> bits(size_t(t.numel()));
  std::memcpy(bits.data(), t.data, bits.size() * 2);  // little-endian host (x86-64, aarch64)
  const uint16_t expMask = t.dtype == DType::BF16 ? 0x7F80 : 0x7C00;  // all-ones exponent: Inf / NaN
  for (uint16_t b : bits) {
    if ((b & expMask) == expMask) fail(t.file + ": tensor " + t.name + " contains NaN or Inf");
  }
  m.assign16(transposed ? transposed2d(bits, r, c) : std::move(bits), t.dtype == DType::BF16 ? DType::BF16 : DType::F16);
}

}  // namespace

namespace {

/** Columns [c0, c0 + n) of a row-major [rows, cols] matrix, in its dtype (a fused lora_B's part, transposed). */
LoraMatrix columnSlice(const LoraMatrix& m, int64_t rows, int64_t cols, int64_t c0, int64_t n) {
  LoraMatrix out;
  if (m.dtype() == DType::F32) {
    const std::vector<float> all = m.toF32();
    std::vector<float> v(size_t(rows * n));
    for (int64_t r = 0; r < rows; r++) std::copy_n(all.data() + r * cols + c0, n, v.data() + r * n);
    out.assignF32(std::move(v));
  } else {
    const std::vector<uint16_t>& all = m.bits16();
    std::vector<uint16_t> v(size_t(rows * n));
    for (int64_t r = 0; r < rows; r++) std::copy_n(all.data() + r * cols + c0, n, v.data() + r * n);
    out.assign16(std::move(v), m.dtype());
  }
  return out;
}

}  // namespace

void LoraMatrix::resize(size_t n) {
  dtype_ = DType::F32;
  n_ = n;
  f32_.assign(n, 0.0f);
  h16_.clear();
  h16_.shrink_to_fit();
}

float& LoraMatrix::operator[](size_t i) {
  if (dtype_ != DType::F32) throw std::logic_error("LoraMatrix: operator[] on a 16-bit matrix (use get())");
  return f32_[i];
}

float LoraMatrix::get(size_t i) const {
  switch (dtype_) {
    case DType::F32: return f32_[i];
    case DType::BF16: {
      float f;
      convertToF32(openlora::DType::BF16, &h16_[i], 1, &f);
      return f;
    }
    default: {
      float f;
      convertToF32(openlora::DType::F16, &h16_[i], 1, &f);
      return f;
    }
  }
}

void LoraMatrix::assignF32(std::vector<float> v) {
  dtype_ = DType::F32;
  n_ = v.size();
  f32_ = std::move(v);
  h16_.clear();
  h16_.shrink_to_fit();
}

void LoraMatrix::assign16(std::vector<uint16_t> bits, DType t) {
  if (t == DType::F32) throw std::logic_error("LoraMatrix::assign16: dtype must be BF16 or F16");
  dtype_ = t;
  n_ = bits.size();
  h16_ = std::move(bits);
  f32_.clear();
  f32_.shrink_to_fit();
}

std::vector<float> LoraMatrix::toF32() const {
  if (dtype_ == DType::F32) return f32_;
  std::vector<float> out(n_);
  convertToF32(dtype_, h16_.data(), n_, out.data());
  return out;
}

bool parseLoraModuleName(const std::string& s, LoraModule* module, FusedModule* fused) {
  *fused = FusedModule::None;
  if (s == "qkv_proj") {
    *module = LoraModule::Q;
    *fused = FusedModule::Qkv;
    return true;
  }
  if (s == "gate_up_proj") {
    *module = LoraModule::Gate;
    *fused = FusedModule::GateUp;
    return true;
  }
  return hf::parseModuleName(s, module);
}
int loraModuleIn(const ModelConfig& c, LoraModule m) {
  switch (m) {
    case LoraModule::O: return c.qDim();
    case LoraModule::Down: return c.intermediateSize;
    default: return c.hiddenSize;
  }
}

int loraModuleOut(const ModelConfig& c, LoraModule m) {
  switch (m) {
    case LoraModule::Q: return c.qDim();
    case LoraModule::K:
    case LoraModule::V: return c.kvDim();
    case LoraModule::O:
    case LoraModule::Down: return c.hiddenSize;
    default: return c.intermediateSize;
  }
}

std::shared_ptr<const LoraAdapter> loadLoraAdapter(const std::string& path, const std::vector<LoraModuleSpec>& modules,
                                                   const ModelConfig& config, int maxRank) {
  if (modules.empty()) invalidArgument("AdapterLoadSpec.modules", path + ": the adapter spec lists no modules");
  auto store = TensorStore::openFile(path);
  auto adapter = std::make_shared<LoraAdapter>();
  adapter->numLayers = config.numHiddenLayers;
  adapter->pairs.resize(size_t(config.numHiddenLayers) * kNumLoraModules);

  for (const LoraModuleSpec& spec : modules) {
    // The parts a fused module is split into: (module, first output row, rows).
    std::vector<std::tuple<LoraModule, int64_t, int64_t>> parts;
    if (spec.fused == FusedModule::Qkv) {
      if (!config.fusedQkv) invalidArgument("AdapterLoadSpec.modules", path + ": qkv_proj is targeted but the base model has separate q/k/v projections");
      parts = {{LoraModule::Q, 0, config.qDim()}, {LoraModule::K, config.qDim(), config.kvDim()},
               {LoraModule::V, config.qDim() + config.kvDim(), config.kvDim()}};
    } else if (spec.fused == FusedModule::GateUp) {
      if (!config.fusedQkv) invalidArgument("AdapterLoadSpec.modules", path + ": gate_up_proj is targeted but the base model has separate gate/up projections");
      parts = {{LoraModule::Gate, 0, config.intermediateSize}, {LoraModule::Up, config.intermediateSize, config.intermediateSize}};
    } else {
      parts = {{spec.module, 0, loraModuleOut(config, spec.module)}};
    }
    const char* moduleName = spec.fused == FusedModule::Qkv ? "qkv_proj" : spec.fused == FusedModule::GateUp ? "gate_up_proj" : hf::moduleName(spec.module);
    const std::string where = path + ": layer " + std::to_string(spec.layer) + " " + moduleName;
    if (spec.layer < 0 || spec.layer >= config.numHiddenLayers) {
      invalidArgument("AdapterLoadSpec.modules", where + ": layer index out of range (the base model has " + std::to_string(config.numHiddenLayers) + " layers)");
    }
    for (const auto& part : parts) {
      if (adapter->pairs[size_t(spec.layer) * kNumLoraModules + int(std::get<0>(part))]) {
        invalidArgument("AdapterLoadSpec.modules", where + ": given twice in the adapter spec");
      }
    }
    if (!std::isfinite(spec.scaling)) invalidArgument("AdapterLoadSpec.modules", where + ": scaling must be finite");

    const TensorView* a = store->find(spec.aName);
    const TensorView* b = store->find(spec.bName);
    if (!a) fail(path + ": tensor " + spec.aName + " not found (lora_A of layer " + std::to_string(spec.layer) + " " + hf::moduleName(spec.module) + ")");
    if (!b) fail(path + ": tensor " + spec.bName + " not found (lora_B of layer " + std::to_string(spec.layer) + " " + hf::moduleName(spec.module) + ")");
    if (a->shape.size() != 2) fail(path + ": tensor " + a->name + " must be 2-D, got shape " + a->shapeString());
    if (b->shape.size() != 2) fail(path + ": tensor " + b->name + " must be 2-D, got shape " + b->shapeString());

    int64_t out = 0;
    for (const auto& part : parts) out += std::get<2>(part);
    const int64_t in = loraModuleIn(config, spec.module);
    // Logical shapes after undoing fan_in_fan_out: A [r, in], B [out, r].
    const int64_t aRank = spec.fanInFanOut ? a->shape[1] : a->shape[0];
    const int64_t aIn = spec.fanInFanOut ? a->shape[0] : a->shape[1];
    const int64_t bOut = spec.fanInFanOut ? b->shape[1] : b->shape[0];
    const int64_t bRank = spec.fanInFanOut ? b->shape[0] : b->shape[1];
    const std::string layoutA = spec.fanInFanOut ? "[in, r]" : "[r, in]";
    const std::string layoutB = spec.fanInFanOut ? "[r, out]" : "[out, r]";
    if (aIn != in) {
      fail(path + ": tensor " + a->name + " has shape " + a->shapeString() + ", expected " + layoutA + " with in = " +
           std::to_string(in) + " for " + moduleName + " of the base model (hint: adapter for a different base model?)");
    }
    if (bOut != out) {
      fail(path + ": tensor " + b->name + " has shape " + b->shapeString() + ", expected " + layoutB + " with out = " +
           std::to_string(out) + " for " + moduleName + " of the base model (hint: adapter for a different base model?)");
    }
    if (aRank != bRank) {
      fail(path + ": rank mismatch between " + a->name + " (r = " + std::to_string(aRank) + ") and " + b->name +
           " (r = " + std::to_string(bRank) + ")");
    }
    if (aRank < 1) fail(path + ": tensor " + a->name + " has rank 0");
    if (aRank > maxRank) {
      invalidArgument("maxLoraRank", path + ": LoRA rank " + std::to_string(aRank) + " of tensor " + a->name + " is greater than maxLoraRank " +
           std::to_string(maxRank));
    }
    auto pair = std::make_unique<LoraPair>();
    pair->rank = int(aRank);
    pair->scaling = spec.scaling;
    readMatrix(*a, spec.fanInFanOut, pair->a);
    // B is kept transposed, [r, out]: a fan_in_fan_out tensor is already in that layout.
    readMatrix(*b, !spec.fanInFanOut, pair->bT);
    if (parts.size() == 1) {
      adapter->pairs[size_t(spec.layer) * kNumLoraModules + int(spec.module)] = std::move(pair);
      continue;
    }
    for (const auto& [m, r0, n] : parts) {
      auto p = std::make_unique<LoraPair>();
      p->rank = pair->rank;
      p->scaling = pair->scaling;
      p->a = pair->a;
      p->bT = columnSlice(pair->bT, aRank, out, r0, n);
      adapter->pairs[size_t(spec.layer) * kNumLoraModules + int(m)] = std::move(p);
    }
  }
  return adapter;
}

int AdapterSlots::reserve() {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < slots_.size(); i++) {
    if (slots_[i].state == State::Free) {
      slots_[i].state = State::Loading;
      return int(i);
    }
  }
  raise(ErrorCode::NoFreeSlot, "no free adapter slot: all " + std::to_string(slots_.size()) + " slots (maxLoras) are loaded or loading; unload one first");
}

void AdapterSlots::install(int slot, std::shared_ptr<const LoraAdapter> adapter) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot& s = slots_.at(size_t(slot));
  s.state = State::Loaded;
  s.refs = 0;
  s.adapter = std::move(adapter);
}

void AdapterSlots::abandon(int slot) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot& s = slots_.at(size_t(slot));
  s = Slot();
}

void AdapterSlots::unload(int slot) {
  std::lock_guard<std::mutex> lock(mu_);
  if (slot < 0 || size_t(slot) >= slots_.size()) {
    invalidArgument("slot", "adapter slot " + std::to_string(slot) + " is out of range [0, " + std::to_string(slots_.size()) + ")");
  }
  Slot& s = slots_[size_t(slot)];
  if (s.state != State::Loaded) raise(ErrorCode::NotFound, "adapter slot " + std::to_string(slot) + " is not loaded", "slot");
  if (s.refs > 0) {
    raise(ErrorCode::Busy, "adapter slot " + std::to_string(slot) + " is in use by " + std::to_string(s.refs) + " live sequence(s)");
  }
  s = Slot();
}

std::vector<ActiveLora> AdapterSlots::acquire(const std::vector<std::pair<int, float>>& refs) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ActiveLora> out;
  for (const auto& [slot, weight] : refs) {
    if (slot < 0 || size_t(slot) >= slots_.size()) {
      invalidArgument("slot", "adapter slot " + std::to_string(slot) + " is out of range [0, " + std::to_string(slots_.size()) + ")");
    }
    if (slots_[size_t(slot)].state != State::Loaded) raise(ErrorCode::NotFound, "adapter slot " + std::to_string(slot) + " is not loaded", "slot");
    if (!std::isfinite(weight)) invalidArgument("weight", "adapter weight for slot " + std::to_string(slot) + " must be finite");
    out.push_back(ActiveLora{slot, weight, slots_[size_t(slot)].adapter});
  }
  for (const ActiveLora& a : out) slots_[size_t(a.slot)].refs++;
  return out;
}

void AdapterSlots::release(const std::vector<ActiveLora>& active) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const ActiveLora& a : active) {
    Slot& s = slots_[size_t(a.slot)];
    if (s.refs > 0) s.refs--;
  }
}

int64_t AdapterSlots::loadedBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t b = 0;
  for (const Slot& s : slots_) b += s.state == State::Loaded && s.adapter ? s.adapter->bytes() : 0;
  return b;
}

int AdapterSlots::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const Slot& s : slots_) n += s.state != State::Free;
  return n;
}

}  // namespace openlora
