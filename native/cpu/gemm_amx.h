// AMX-BF16 tiles for gemmPacked's bf16-activation mode (internal to gemm_packed.cc; see
// gemm_packed.h for the mode and its numerics).
#pragma once

#include <cstdint>
#include <functional>

#include "gemm_packed.h"

namespace openlora::cpu::amx {

/** Tile configuration, palette 1 (LDTILECFG's 64-byte memory operand): bytes per row and rows of tiles 0-15. */
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

/** Rows and pairs per tile: x is padded (with zeros) to multiples of these for the AMX kernel. */
constexpr int kRows = 16;
constexpr int kPairs = 16;

/**
 * Whether the AMX kernel can run: the CPU reports amx_tile + amx_bf16 (and AVX-512 BW for the
 * staging), the kernel granted the tile permission (requestAmxPermission), and OPENLORA_GEMM is
 * not "avx512" / "avx512-bf16-dot" (which keep the vector kernels). Checked once.
 */
bool usable();

/**
 * One finished tile: out [mr][np][16] float32 (row r, panel p at out + (r * np + p) * 16) for
 * rows [t0, t0 + mr) of x and panels [q, q + np).
 */
using EmitTile = std::function<void(const float* out, int mr, int np, int64_t t0, int64_t q)>;

/**
 * Panels [p0, p1) of the BF16 matrix w for the m rows of xp (bf16 pairs, row stride ldxp pairs,
 * rows padded with zeros to a multiple of kRows and pairs to a multiple of kPairs). Per chunk of up
 * to 4 panels the weights are restaged once into the tiles' pair layout, then every 16-row tile
 * runs tdpbf16ps over 32-feature blocks in ascending order (one fixed order per output: batch-
 * invariant). Calls emit for each tile. Loads and releases the tile configuration itself.
 */
void gemmPanels(const uint32_t* xp, int64_t ldxp, int64_t m, const PackedMatrix& w, int64_t p0, int64_t p1, const EmitTile& emit);

}  // namespace openlora::cpu::amx
