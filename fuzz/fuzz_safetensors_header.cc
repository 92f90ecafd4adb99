// libFuzzer target: arbitrary bytes through the safetensors reader, header validation and
// tensor access included. A fastdit::Error is the expected answer to bad bytes; anything
// else (a crash, a sanitizer report, a leak, another exception) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "loader/safetensors.h"

namespace {

// Reads every byte of the tensor, so a range the validation let through that leaves the
// input is an AddressSanitizer report rather than a silent pass.
uint8_t xor_of_bytes(const fastdit::Tensor& tensor) {
  const auto* bytes = static_cast<const uint8_t*>(tensor.data_ptr());
  uint8_t folded = 0;
  for (size_t i = 0; i < tensor.nbytes(); ++i) folded ^= bytes[i];
  return folded;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);  // the reader wants writable bytes, as an mmap gives
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    const auto file = fastdit::SafetensorsFile::from_bytes(bytes, nullptr, "fuzz-input");
    volatile uint8_t sink = 0;
    for (const std::string& name : file.names()) {
      const fastdit::Tensor tensor = file.tensor(name);
      if (tensor.nbytes() != file.info(name).nbytes()) __builtin_trap();
      sink = sink ^ xor_of_bytes(tensor);
    }
  } catch (const fastdit::Error&) {
  }
  return 0;
}
