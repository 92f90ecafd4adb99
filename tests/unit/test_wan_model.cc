// The native Wan model built from real config.json files (no weights) has exactly the
// parameter names, shapes and load dtypes the official class has (dumps made by
// tools/reference/dump_keys.py with specs/wan.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/transformer_loader.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

class WanRealConfig : public ::testing::TestWithParam<std::string> {};

TEST_P(WanRealConfig, ParametersMatchTheReferenceDump) {
  testing::expect_parameters_match_dump(testing::source_path("tests/fixtures/wan/keys"), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Variants, WanRealConfig,
                         ::testing::Values("Wan2.1-T2V-1.3B", "Wan2.1-T2V-14B", "Wan2.1-I2V-14B-480P",
                                           "Wan2.2-TI2V-5B"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

TEST(WanConfig, UnknownKeyIsAnErrorNamingIt) {
  const fs::path dir = testing::temp_dir("wan_bad_config");
  std::ofstream(dir / "config.json") << R"({"_class_name": "WanTransformer3DModel", "num_layers": 1, "rope_theta": 5})";
  try {
    build_transformer(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'rope_theta'"), std::string::npos) << e.what();
  }
}

TEST(WanConfig, WrongTypeAndUnknownClassAreErrors) {
  const fs::path dir = testing::temp_dir("wan_bad_type");
  std::ofstream(dir / "config.json") << R"({"_class_name": "WanTransformer3DModel", "num_layers": "2"})";
  EXPECT_THROW(build_transformer(dir), Error);
  std::ofstream(dir / "config.json") << R"({"_class_name": "NoSuchModel"})";
  try {
    build_transformer(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("WanTransformer3DModel"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fastdit
