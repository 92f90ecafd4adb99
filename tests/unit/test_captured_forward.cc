// What CapturedForward and DeviceGraph refuse without a GPU: a model on the CPU, a model
// whose weights are not loaded, a capture on the CPU device. (tests/gpu/test_cuda_graph.cc
// covers capture and replay.)
#include <gtest/gtest.h>

#include "core/device_graph.h"
#include "loader/transformer_loader.h"
#include "models/captured_forward.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

const std::filesystem::path kCase = "tests/fixtures/wan/t2v/transformer";

void expect_error(const std::function<void()>& call, const std::string& text) {
  try {
    call();
    FAIL() << "expected an error containing '" << text << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(CapturedForward, ModelOnTheCpuIsRefused) {
  const LoadedTransformer loaded = load_transformer(testing::source_path(kCase), LoadOptions{});
  expect_error([&] { CapturedForward graph(*loaded.model); },
               "CUDA graph capture of WanTransformer3DModel: the model is on cpu, which has no device graphs");
}

TEST(CapturedForward, ModelWithoutWeightsIsRefused) {
  const auto model = build_transformer(testing::source_path(kCase));
  expect_error([&] { CapturedForward graph(*model); }, "its parameters are not loaded");
}

TEST(DeviceGraph, TheCpuHasNone) {
  EXPECT_FALSE(DeviceGraph::supported(Device::cpu()));
  bool ran = false;
  expect_error([&] { DeviceGraph::capture(Device::cpu(), [&] { ran = true; }); },
               "device graphs: cpu cannot capture them (CUDA devices only)");
  EXPECT_FALSE(ran);
  expect_error([] { DeviceGraph().replay(); }, "replay of an empty DeviceGraph");
}

}  // namespace
}  // namespace fastdit
