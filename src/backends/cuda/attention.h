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
void flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out);
// The Hopper kernel flash_attention runs where it can (attention_flash_sm90.cu): head dims 64
// and 128 (D = Dv), as many K/V heads as query heads, a positive scale, an sm_90 device; the
// mma.sync kernel serves the rest.
bool flash_attention_sm90_serves(const Tensor& q, const Tensor& k, const Tensor& v, float scale);
void flash_attention_sm90(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                          Tensor& out);

// Serves every call the op allows, masks included.
void reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                         float scale, Tensor& out);

}  // namespace fastdit::cuda
