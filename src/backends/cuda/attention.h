// The attention backends behind cuda::attention. Each says why it cannot serve a call
// (an empty string when it can) and runs it. All take q [B, Sq, H, D], k [B, Sk, H, D],
// v [B, Sk, H, Dv] and write out [B, Sq, H, Dv], contiguous, with B, Sq, H > 0 and Sk > 0;
// k and v may hold fewer heads Hkv dividing H (query head h reads kv head h / (H / Hkv)).
#pragma once

#include <string>

#include "core/tensor.h"

namespace fastdit::cuda {

std::string cudnn_sdpa_refusal(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& mask);
void cudnn_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out);

std::string flash_attention_refusal(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask);
// mask (optional) is a key mask (is_key_mask): Bool (false drops the key) or float (added to
// the scaled scores, −10000 text masks and −inf alike), served inside the kernels as a
// float32 bias per key; a query row whose keys are all dropped gives zeros.
void flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out,
                     const Tensor& mask = {});
// Whether mask only varies over keys (and batch items): [B or 1, 1, 1, Sk], or Sk elements.
bool is_key_mask(const Tensor& mask, int64_t batch, int64_t kv_len);
// A key mask as the flash kernels read it, on the mask's device:
//   bias       float32 [B or 1, stride], the mask times `factor` (Bool: 0 or −inf), stride
//              Sk rounded up to kKeyBiasAlign keys, the padding −inf: every key tile of
//              either kernel is a whole, 16-byte aligned piece of a row (staged into shared
//              memory beside its K tile);
//   tile_flags int32 [B or 1, stride / kKeyBiasChunk]: flag c is nonzero when keys
//              kKeyBiasChunk·c … of the chunk (below Sk) carry any bias but zero (−inf, NaN
//              and −10000 alike), so a kernel skips the add for a tile whose flags are all 0.
constexpr int64_t kKeyBiasAlign = 128, kKeyBiasChunk = 32;
struct KeyBias {
  Tensor bias, tile_flags;
  bool defined() const { return bias.defined(); }
};
KeyBias key_bias_from_mask(const Tensor& mask, int64_t kv_len, float factor);
// The Hopper kernel flash_attention runs where it can (attention_flash_sm90.cu): head dims 64
// and 128 (D = Dv), K/V heads dividing the query heads, a positive scale, an sm_90 device; the
// mma.sync kernel serves the rest. key_bias (optional) from key_bias_from_mask(mask, Sk,
// 1 / scale): added to raw scores.
bool flash_attention_sm90_serves(const Tensor& q, const Tensor& k, const Tensor& v, float scale);
void flash_attention_sm90(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                          const KeyBias& key_bias, Tensor& out);

// Serves every call the op allows, masks included.
void reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                         float scale, Tensor& out);

}  // namespace fastdit::cuda
