// Every parity case (Wan, SD3, Stable Audio) on the CUDA backend: float32 (cuBLASLt without TF32, reference
// attention) within 1e-4, bfloat16 within the reference's own bf16 error bound; fused
// projections (the CUDA default) and unfused.
#include <gtest/gtest.h>

#include "parity/parity_case.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

struct CudaParity : ::testing::TestWithParam<std::string> {};

std::filesystem::path case_dir(const std::string& name) {
  return testing::source_path("tests/fixtures/" + name);
}

TEST_P(CudaParity, Float32) {
  for (bool fuse : {true, false}) {
    const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cuda(0), DType::Float32, fuse);
    std::printf("parity %-26s cuda float32  fuse=%d rel_l2=%.3e max_abs=%.3e\n", GetParam().c_str(), fuse,
                r.rel_l2, r.max_abs);
    EXPECT_TRUE(r.pass) << "fuse " << fuse << " rel_l2 " << r.rel_l2 << " bound " << r.bound;
  }
}

TEST_P(CudaParity, BFloat16) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cuda(0), DType::BFloat16);
  std::printf("parity %-26s cuda bfloat16 rel_l2=%.3e bound=%.3e\n", GetParam().c_str(), r.rel_l2, r.bound);
  EXPECT_TRUE(r.pass) << "rel_l2 " << r.rel_l2 << " bound " << r.bound << " (" << r.bound_note << ")";
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaParity,
                         ::testing::Values("wan/t2v", "wan/t2v_batch2_sharded", "wan/i2v", "wan/flf2v",
                                           "wan/ti2v_per_token", "wan/t2v_original_layout", "sd3/sd3",
                                           "sd3/sd35_medium", "sd3/sd35_odd_size", "sd3/sd3_batch2",
                                           "stable_audio/base", "stable_audio/timestep_per_item",
                                           "stable_audio/gqa4_odd", "stable_audio/masks", "stable_audio/long",
                                           "stable_audio/base_original_layout"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) if (c == '/') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace fastdit
