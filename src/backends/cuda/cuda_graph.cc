// CUDA graphs behind DeviceGraph: stream capture of the device's one stream, in global
// mode (a call that could disturb the capture, from any thread, fails instead of being
// silently left out), instantiated and uploaded once, replayed with cudaGraphLaunch.
// The capture's allocations come from a pool of its own (cuda_device.h), released with
// the graph.
#include <exception>
#include <functional>
#include <memory>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"

namespace fastdit::cuda {

namespace {

struct Graph {
  int device = 0;
  uint64_t pool = 0;
  cudaGraphExec_t exec = nullptr;
};

[[noreturn]] void fail_capture(int device, const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const Error& e) {
    throw Error(fastdit::detail::concat("CUDA graph capture on cuda:", device, ": ", e.what()), e.where());
  } catch (const std::exception& e) {
    throw Error(fastdit::detail::concat("CUDA graph capture on cuda:", device, ": ", e.what()));
  }
}

// Runs body with the stream captured; the capture ends whatever body does. Returns the
// recorded graph; a failure inside body, or a capture the driver invalidated, throws.
cudaGraph_t record(int device, const std::function<void()>& body) {
  const cudaStream_t stream = current_stream(device);
  FASTDIT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  std::exception_ptr failure;
  try {
    body();
  } catch (...) {
    failure = std::current_exception();
  }
  cudaGraph_t recorded = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &recorded);
  if (failure || ended != cudaSuccess) {
    cudaGetLastError();  // the capture's error, reported below, must not be left pending
    if (recorded != nullptr) cudaGraphDestroy(recorded);
    if (failure) fail_capture(device, failure);
    FASTDIT_FAIL("CUDA graph capture on cuda:", device, " was invalidated (", cudaGetErrorString(ended),
                 "): the captured code made a call a graph cannot hold, such as a wait, a host copy "
                 "or work on another stream");
  }
  return recorded;
}

}  // namespace

// A replay still queued finishes first: the driver frees an executing graph when it is
// done, and the pool's blocks go back to work queued after it on the same stream.
void destroy_graph(void* handle) {
  const auto* graph = static_cast<const Graph*>(handle);
  if (graph->exec != nullptr) cudaGraphExecDestroy(graph->exec);
  release_capture_pool(graph->pool, graph->device);
  delete graph;
}

void* capture_graph(int device, const std::function<void()>& body) {
  DeviceGuard guard(device);
  FASTDIT_CHECK(!is_capturing(device), "CUDA graph capture on cuda:", device, " inside another capture");
  std::unique_ptr<Graph, void (*)(void*)> graph(new Graph{device, begin_capture_pool(device), nullptr},
                                                destroy_graph);
  cudaGraph_t recorded = nullptr;
  try {
    recorded = record(device, body);
  } catch (...) {
    end_capture_pool(device);
    throw;
  }
  end_capture_pool(device);
  const cudaError_t instantiated = cudaGraphInstantiate(&graph->exec, recorded, 0);
  cudaGraphDestroy(recorded);
  FASTDIT_CUDA_CHECK(instantiated);
  // The first replay then costs what every other one does.
  FASTDIT_CUDA_CHECK(cudaGraphUpload(graph->exec, current_stream(device)));
  return graph.release();
}

void replay_graph(void* handle) {
  const auto* graph = static_cast<const Graph*>(handle);
  DeviceGuard guard(graph->device);
  FASTDIT_CUDA_CHECK(cudaGraphLaunch(graph->exec, current_stream(graph->device)));
}

}  // namespace fastdit::cuda
