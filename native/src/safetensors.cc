// See safetensors.h.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "errors.h"
#include "files.h"
#include "json.h"

namespace openlora {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

/** A bad_file Error about `path`. */
[[noreturn]] void fail(const std::string& path, const std::string& msg) { raise(ErrorCode::BadFile, path + ": " + msg); }

/** The error for a file that cannot be opened: not_found when it does not exist, else bad_file. */
[[noreturn]] void failOpen(const std::string& path, int err) {
  raise(err == ENOENT ? ErrorCode::NotFound : ErrorCode::BadFile, path + ": cannot open: " + std::strerror(err));
}

/** A JSON number that must be a non-negative integer below 2^53. */
int64_t asIndex(const JsonValue& v, const std::string& path, const std::string& what) {
  if (!v.isNumber()) fail(path, what + " must be a number, got " + v.typeName());
  double d = v.asNumber();
  if (!(d >= 0) || d > 9007199254740992.0 || std::floor(d) != d) {
    fail(path, what + " must be a non-negative integer, got " + std::to_string(d));
  }
  return int64_t(d);
}

bool fileExists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<float> TensorView::toF32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  convertToF32(dtype, data, out.size(), out.data());
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) failOpen(path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(errno));
  }
  size_ = size_t(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail(path, "truncated: file has " + std::to_string(size_) + " bytes, a safetensors file needs at least 8");
  }
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping stays valid
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail(path, std::string("mmap failed: ") + std::strerror(errno));
  }
  try {
    const uint8_t* base = static_cast<const uint8_t*>(map_);
    uint64_t headerLen = 0;
    for (int i = 7; i >= 0; i--) headerLen = (headerLen << 8) | base[i];
    if (headerLen > kMaxHeaderBytes) {
      fail(path, "header length " + std::to_string(headerLen) + " exceeds the 100 MB limit (corrupt or not a safetensors file)");
    }
    if (headerLen > size_ - 8) {
      fail(path, "truncated: header length " + std::to_string(headerLen) + " is larger than the " +
                     std::to_string(size_ - 8) + " bytes after the length prefix");
    }
    const uint64_t dataSize = size_ - 8 - headerLen;
    const uint8_t* dataBase = base + 8 + headerLen;
    JsonValue header = parseJson(std::string(reinterpret_cast<const char*>(base + 8), headerLen), path + " (header)");
    if (!header.isObject()) fail(path, std::string("header must be a JSON object, got ") + header.typeName());

    std::vector<std::pair<int64_t, int64_t>> ranges;  // [begin, end) per tensor, for the overlap check
    std::vector<const std::string*> rangeNames;
    for (const auto& [name, info] : header.members()) {
      if (name == "__metadata__") continue;
      const std::string where = "tensor " + name;
      if (!info.isObject()) fail(path, where + ": entry must be an object");
      const JsonValue* dt = info.find("dtype");
      const JsonValue* shape = info.find("shape");
      const JsonValue* offsets = info.find("data_offsets");
      if (!dt || !dt->isString()) fail(path, where + ": missing string field dtype");
      if (!shape || !shape->isArray()) fail(path, where + ": missing array field shape");
      if (!offsets || !offsets->isArray() || offsets->items().size() != 2) {
        fail(path, where + ": data_offsets must be [begin, end]");
      }
      TensorView tv;
      tv.name = name;
      tv.file = path;
      if (!parseDType(dt->asString(), &tv.dtype)) {
        fail(path, where + ": unsupported dtype " + dt->asString() + " (supported: F32, F16, BF16)");
      }
      for (const JsonValue& d : shape->items()) tv.shape.push_back(asIndex(d, path, where + " shape"));
      int64_t begin = asIndex(offsets->items()[0], path, where + " data_offsets[0]");
      int64_t end = asIndex(offsets->items()[1], path, where + " data_offsets[1]");
      if (end < begin) fail(path, where + ": data_offsets end " + std::to_string(end) + " < begin " + std::to_string(begin));
      if (uint64_t(end) > dataSize) {
        fail(path, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       "] out of range: the data region has " + std::to_string(dataSize) + " bytes (truncated file?)");
      }
      // Shape product with overflow guard (dims are < 2^53, the region is < 2^64).
      long double expect = dtypeSize(tv.dtype);
      for (int64_t d : tv.shape) expect *= d;
      if (expect != (long double)(end - begin)) {
        fail(path, where + ": shape " + tv.shapeString() + " x " + std::to_string(dtypeSize(tv.dtype)) + " bytes (" +
                       dt->asString() + ") needs " + std::to_string((unsigned long long)expect) + " bytes but data_offsets span " +
                       std::to_string(end - begin));
      }
      tv.data = dataBase + begin;
      tensors_.emplace(name, std::move(tv));
      ranges.emplace_back(begin, end);
      rangeNames.push_back(&tensors_.find(name)->first);
    }
    // Overlap check: sort by begin; each non-empty range must start at or after the previous end.
    std::vector<size_t> order(ranges.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
    for (size_t k = 1; k < order.size(); k++) {
      const auto& prev = ranges[order[k - 1]];
      const auto& cur = ranges[order[k]];
      if (cur.first < prev.second && cur.second > cur.first) {
        fail(path, "tensors " + *rangeNames[order[k - 1]] + " and " + *rangeNames[order[k]] + " overlap in the data region");
      }
    }
  } catch (...) {
    ::munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

std::unique_ptr<TensorStore> TensorStore::openFile(const std::string& path) {
  auto store = std::unique_ptr<TensorStore>(new TensorStore());
  store->where_ = path;
  store->files_.push_back(std::make_unique<SafetensorsFile>(path));
  for (const auto& [name, tv] : store->files_.back()->tensors()) store->index_[name] = &tv;
  return store;
}

std::unique_ptr<TensorStore> TensorStore::openDir(const std::string& dir) {
  const std::string single = dir + "/model.safetensors";
  const std::string indexPath = dir + "/model.safetensors.index.json";
  if (fileExists(single)) {
    auto store = openFile(single);
    store->where_ = dir;
    return store;
  }
  if (!fileExists(indexPath)) {
    raise(ErrorCode::NotFound, dir + ": no model.safetensors or model.safetensors.index.json in the model folder");
  }
  JsonValue index = parseJson(readFile(indexPath), indexPath);
  const JsonValue* wm = index.find("weight_map");
  if (!wm || !wm->isObject()) fail(indexPath, "missing object field weight_map");
  auto store = std::unique_ptr<TensorStore>(new TensorStore());
  store->where_ = dir;
  std::map<std::string, SafetensorsFile*> shards;
  for (const auto& [name, file] : wm->members()) {
    if (!file.isString()) fail(indexPath, "weight_map[" + name + "] must be a file name");
    const std::string& shardName = file.asString();
    if (shardName.find('/') != std::string::npos || shardName.find("..") != std::string::npos) {
      fail(indexPath, "weight_map[" + name + "]: shard name " + shardName + " must be a plain file name");
    }
    auto it = shards.find(shardName);
    if (it == shards.end()) {
      store->files_.push_back(std::make_unique<SafetensorsFile>(dir + "/" + shardName));
      it = shards.emplace(shardName, store->files_.back().get()).first;
    }
    auto t = it->second->tensors().find(name);
    if (t == it->second->tensors().end()) {
      fail(indexPath, "weight_map says tensor " + name + " is in " + shardName + ", but that shard does not contain it");
    }
    store->index_[name] = &t->second;
  }
  return store;
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& TensorStore::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(where_, "tensor " + name + " not found");
  return *t;
}

void TensorStore::releaseBytes(const uint8_t* p, size_t n) {
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void TensorStore::release(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t || t->numel() == 0) return;
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t->data) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(t->data) + uintptr_t(t->numel()) * dtypeSize(t->dtype);
  // NOTE(why): rounding outward also drops the neighbours' edge pages; they fault back in from
  // the page cache if read, so this is only ever a resident-set hint.
  (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

std::string TensorStore::dominantDType() const {
  std::map<std::string, int64_t> bytes;
  for (const auto& [name, tv] : index_) bytes[dtypeName(tv->dtype)] += tv->numel();
  std::string best = "F32";
  int64_t most = -1;
  for (const auto& [d, n] : bytes) {
    if (n > most) { most = n; best = d; }
  }
  return best;
}

}  // namespace openlora
