// safetensors reader: one file (memory-mapped) or a sharded set (model.safetensors.index.json).
//
// Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N,
// N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data region; offsets are relative to the start of the data region.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace openlora {

/** One tensor's metadata and a pointer to its bytes inside a mapped file. */
struct TensorView {
  std::string name;
  std::string file;            // path of the file holding it (for error messages)
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // e.g. [out, in] for a linear weight
  const uint8_t* data = nullptr;  // [numel * dtypeSize(dtype)] bytes, unaligned
  int64_t numel() const;
  /** "[a, b]" for messages. */
  std::string shapeString() const;
  /** Copy to a new float32 buffer (numel() values, row-major). */
  std::vector<float> toF32() const;
};

/**
 * A validated, memory-mapped safetensors file.
 *
 * Construction checks: header length (8-byte LE, <= 100 MB, within the file), the header is a
 * JSON object, each tensor has a supported dtype, a non-negative integer shape, offsets
 * [begin, end] inside the data region with shape product * dtype size == end - begin, and no
 * two tensors overlap.
 * @throws Error (errors.h) naming the file and, where it applies, the tensor.
 */
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  std::string path_;
  void* map_ = nullptr;  // the whole file, read-only
  size_t size_ = 0;      // bytes
  std::map<std::string, TensorView> tensors_;
};

/**
 * Every tensor of a model folder: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json` (its `weight_map`: tensor name -> shard file name).
 */
class TensorStore {
 public:
  /** Open a single file. */
  static std::unique_ptr<TensorStore> openFile(const std::string& path);
  /** Open a Hugging Face model folder (single file or sharded). */
  static std::unique_ptr<TensorStore> openDir(const std::string& dir);

  /** The tensor, or nullptr. */
  const TensorView* find(const std::string& name) const;
  /** The tensor; throws "<where>: tensor <name> not found" when absent. */
  const TensorView& get(const std::string& name) const;
  /**
   * Drop the mapped pages of tensor `name` from this process (madvise MADV_DONTNEED; the page
   * cache keeps them): a loader that has packed a tensor calls this so the file does not stay in
   * its resident set beside the packed copy. Reading the tensor again is still valid (the pages
   * fault back in). No-op for an unknown name.
   */
  void release(const std::string& name) const;
  /**
   * Drop the whole pages inside [p, p + n) of a mapped tensor's bytes (rounded inward, so pages
   * shared with bytes not yet read stay): a loader reading a big tensor in pieces calls this after
   * each piece, so not even one tensor's file pages pile up in the resident set.
   */
  static void releaseBytes(const uint8_t* p, size_t n);
  /** The dtype most weights are stored in (for ModelInfo.dtype). */
  std::string dominantDType() const;
  /** Where the tensors came from (a file or a folder), for messages. */
  const std::string& where() const { return where_; }

 private:
  std::string where_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace openlora
