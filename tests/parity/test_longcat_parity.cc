// Every LongCatVideoTransformer3DModel parity case under tests/fixtures/longcat/ (made by
// tools/reference/make_cases.py from tools/reference/specs/longcat.py) through the
// production loader on the CPU. The cases are found when the test runs, so a new one is
// checked without a rebuild.
#include <gtest/gtest.h>

#include "parity/parity_case.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path fixtures() { return testing::source_path("tests/fixtures/longcat"); }

// A case that throws (a load error, a forward not ported yet) fails with its message and
// the next case still runs.
void expect_every_case_passes(DType dtype) {
  const auto cases = testing::family_cases("longcat");
  ASSERT_FALSE(cases.empty()) << "no parity case under " << fixtures().string()
                              << "; make them with: python3 tools/reference/make_cases.py --ref <reference src> "
                                 "--spec tools/reference/specs/longcat.py --out tests/fixtures/longcat";
  for (const std::string& name : cases) {
    const fs::path dir = fixtures() / name;
    SCOPED_TRACE(dir.string());
    try {
      const ParityResult r = run_parity_case(dir, Device::cpu(), dtype);
      EXPECT_EQ(r.model_type, "LongCatVideoTransformer3DModel");
      EXPECT_TRUE(r.pass) << head_lines(r) << r.divergence_report;
      if (dtype != DType::Float32) EXPECT_GT(r.rel_l2, 1e-6) << "equal to float32: the run was not in bfloat16";
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

TEST(LongcatParity, EveryCaseFloat32OnCpu) { expect_every_case_passes(DType::Float32); }

TEST(LongcatParity, EveryCaseBFloat16OnCpuWithinTheReferencesOwnBf16Error) {
  expect_every_case_passes(DType::BFloat16);
}

}  // namespace
}  // namespace fastdit
