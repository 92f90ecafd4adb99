#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"

namespace fastdit::cuda {

// Seen as [outer, size(dim) * inner] bytes, every input is one 2-D block of out: `outer`
// rows of its own width, placed at a column offset. One cudaMemcpy2DAsync per input.
void concat(std::span<const Tensor> tensors, int64_t dim, Tensor& out) {
  if (out.numel() == 0) return;
  int64_t outer = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  const auto out_row_bytes = out.nbytes() / static_cast<size_t>(outer);
  DeviceGuard guard(out.device());
  const cudaStream_t stream = current_stream(out.device().index);
  auto* dst = static_cast<char*>(out.data_ptr());
  size_t column = 0;
  for (const Tensor& t : tensors) {
    const size_t row_bytes = t.nbytes() / static_cast<size_t>(outer);
    if (row_bytes == 0) continue;
    FASTDIT_CUDA_CHECK(cudaMemcpy2DAsync(dst + column, out_row_bytes, t.data_ptr(), row_bytes,
                                         row_bytes, static_cast<size_t>(outer),
                                         cudaMemcpyDeviceToDevice, stream));
    column += row_bytes;
  }
}

}  // namespace fastdit::cuda
