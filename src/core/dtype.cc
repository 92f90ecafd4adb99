#include "core/dtype.h"

#include "core/error.h"

namespace fastdit {

namespace {
struct DTypeInfo {
  DType dtype;
  size_t size;
  bool floating;
  const char* name;
  const char* safetensors;
};

constexpr DTypeInfo kInfo[] = {
    {DType::Float32, 4, true, "float32", "F32"},
    {DType::Float64, 8, true, "float64", "F64"},
    {DType::BFloat16, 2, true, "bfloat16", "BF16"},
    {DType::Float16, 2, true, "float16", "F16"},
    {DType::Float8E4M3, 1, true, "float8_e4m3fn", "F8_E4M3"},
    {DType::Float8E5M2, 1, true, "float8_e5m2", "F8_E5M2"},
    {DType::Int8, 1, false, "int8", "I8"},
    {DType::Int16, 2, false, "int16", "I16"},
    {DType::Int32, 4, false, "int32", "I32"},
    {DType::Int64, 8, false, "int64", "I64"},
    {DType::UInt8, 1, false, "uint8", "U8"},
    {DType::UInt16, 2, false, "uint16", "U16"},
    {DType::UInt32, 4, false, "uint32", "U32"},
    {DType::UInt64, 8, false, "uint64", "U64"},
    {DType::Bool, 1, false, "bool", "BOOL"},
};

const DTypeInfo& info(DType dtype) {
  const auto index = static_cast<size_t>(dtype);
  FASTDIT_CHECK(index < std::size(kInfo), "invalid dtype value ", index);
  return kInfo[index];
}
}  // namespace

size_t dtype_size(DType dtype) { return info(dtype).size; }
bool is_floating(DType dtype) { return info(dtype).floating; }
const char* dtype_name(DType dtype) { return info(dtype).name; }
std::string torch_dtype_name(DType dtype) { return std::string("torch.") + info(dtype).name; }
const char* safetensors_dtype_code(DType dtype) { return info(dtype).safetensors; }

std::optional<DType> dtype_from_safetensors_code(std::string_view code) {
  for (const auto& entry : kInfo)
    if (code == entry.safetensors) return entry.dtype;
  return std::nullopt;
}

DType parse_dtype(std::string_view name) {
  for (const auto& entry : kInfo)
    if (name == entry.name) return entry.dtype;
  if (name == "fp32" || name == "f32" || name == "float") return DType::Float32;
  if (name == "bf16") return DType::BFloat16;
  if (name == "fp16" || name == "f16" || name == "half") return DType::Float16;
  if (name == "fp64" || name == "f64" || name == "double") return DType::Float64;
  FASTDIT_FAIL("unknown dtype '", name, "' (expected float32, bfloat16 or float16)");
}

}  // namespace fastdit
