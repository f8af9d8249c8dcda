"""Deterministic "random" weights shared by the PyTorch reference and the tests (no torch needed in CI).

Every base tensor is a pure function of (seed, tensor name, element index): a murmur3 fmix32 hash
gives `bits` random bits k, and the value is

    offset + (2k - (2^bits - 1)) / 2^bits * 2^-exp

an odd multiple of 2^-(bits+exp) plus 0 or 1, so with bits <= 8 (bits <= 4 when offset is 1) every
value is exact in BF16, F16 and F32: the engine sees the same numbers whatever dtype the
generated file uses. test/native/family-fixtures.ts implements the same function in TypeScript
and writes the model.safetensors a fixture's weights.json describes into a temporary folder.
"""
import json
import struct

import numpy as np

M32 = 0xFFFFFFFF


def fnv1a32(text):
    """FNV-1a 32-bit hash of the UTF-8 bytes of `text`."""
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & M32
    return h


def fmix32(h):
    """murmur3's 32-bit finalizer on a numpy uint32 array (wrapping arithmetic)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    h = h ^ (h >> np.uint32(16))
    return h


def generate(seed, name, n, bits, exp, offset):
    """float32 array [n] of tensor `name` (see module docstring)."""
    assert 1 <= bits <= 8 and (offset == 0 or bits <= 4)
    with np.errstate(over="ignore"):
        key = fmix32(np.array([(fnv1a32(name) ^ seed) & M32], dtype=np.uint32))[0]
        i = np.arange(n, dtype=np.uint32)
        h = fmix32((i * np.uint32(0x9E3779B1)) ^ key)
    k = (h >> np.uint32(32 - bits)).astype(np.float64)
    v = (2 * k - (2 ** bits - 1)) / 2 ** bits * 2.0 ** (-exp) + offset
    return v.astype(np.float32)


def spec(name, shape, bits=8, exp=0, offset=0):
    """One weights.json entry."""
    return {"name": name, "shape": list(shape), "bits": bits, "exp": exp, "offset": offset}


def materialize(manifest):
    """{name: float32 numpy array of its shape} for a weights.json manifest."""
    out = {}
    for t in manifest["tensors"]:
        n = int(np.prod(t["shape"]))
        out[t["name"]] = generate(manifest["seed"], t["name"], n, t["bits"], t["exp"], t["offset"]).reshape(t["shape"])
    return out


def _bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even (torch's rounding)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def write_safetensors(path, tensors, dtype):
    """Write {name: float32 array} as one safetensors file in dtype F32, F16 or BF16.

    Layout: huggingface/safetensors docs (u64 LE header length, JSON header padded with spaces to
    8 bytes, contiguous data in header order).
    """
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        if dtype == "F32":
            b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        elif dtype == "F16":
            b = np.ascontiguousarray(a, dtype="<f2").tobytes()
        elif dtype == "BF16":
            b = _bf16_bits(a).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    js = json.dumps(header, separators=(",", ":"))
    js += " " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js.encode("utf-8"))
        for b in blobs:
            f.write(b)


def stored_values(a, dtype):
    """What a float32 array becomes once stored as dtype and read back as float32."""
    if dtype == "F32":
        return a.astype(np.float32)
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    bits = _bf16_bits(a).astype(np.uint32) << 16
    return bits.view(np.float32)
