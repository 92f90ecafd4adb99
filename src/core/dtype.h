// Element types. Float types compute in float32 on the CPU backend; the others are
// storage types a checkpoint may carry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fastdit {

enum class DType : uint8_t {
  Float32,
  Float64,
  BFloat16,
  Float16,
  Float8E4M3,  // e4m3fn: no infinities, max 448
  Float8E5M2,
  Int8,
  Int16,
  Int32,
  Int64,
  UInt8,
  UInt16,
  UInt32,
  UInt64,
  Bool,
};

size_t dtype_size(DType dtype);
bool is_floating(DType dtype);
// "float32", "bfloat16", ...
const char* dtype_name(DType dtype);
// The name PyTorch prints: "torch.float32", "torch.bfloat16", ...
std::string torch_dtype_name(DType dtype);
// The safetensors header code: "F32", "BF16", "I64", "F8_E4M3", ...
const char* safetensors_dtype_code(DType dtype);
std::optional<DType> dtype_from_safetensors_code(std::string_view code);
// Accepts dtype_name() spellings plus fp32/f32/bf16/fp16/f16/half/float. Throws on others.
DType parse_dtype(std::string_view name);

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<int8_t>() { return DType::Int8; }
template <> constexpr DType dtype_of<int16_t>() { return DType::Int16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::Int32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::UInt8; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::UInt16; }
template <> constexpr DType dtype_of<uint32_t>() { return DType::UInt32; }
template <> constexpr DType dtype_of<uint64_t>() { return DType::UInt64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

}  // namespace fastdit
