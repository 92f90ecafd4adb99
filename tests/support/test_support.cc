#include "support/test_support.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "parity/parity_case.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <unistd.h>

namespace fastdit::testing {

Accuracy accuracy(const std::vector<float>& got, const std::vector<float>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double num = 0, den = 0, dot = 0, gg = 0, max_error = 0, max_ref = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    const double d = double(got[i]) - ref[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
    dot += double(got[i]) * ref[i];
    gg += double(got[i]) * got[i];
    max_error = std::max(max_error, std::fabs(d));
    max_ref = std::max(max_ref, std::fabs(double(ref[i])));
  }
  return {std::sqrt(num / den), dot / std::sqrt(den * gg), max_error / max_ref};
}

double milliseconds_per_call(const std::function<void()>& call, int iterations) {
  const Device gpu = Device::cuda(0);
  call();
  synchronize(gpu);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) call();
  synchronize(gpu);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / iterations;
}

Tensor random_tensor(const Shape& shape, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape, DType::Float32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

std::filesystem::path source_path(const std::string& relative) {
  const char* root = std::getenv("FASTDIT_SOURCE_DIR");
  return std::filesystem::path(root ? root : FASTDIT_TEST_SOURCE_DIR) / relative;
}

std::vector<std::string> family_cases(const std::string& family) {
  return discover_cases(source_path("tests/fixtures/" + family));
}

std::vector<std::string> all_parity_cases() {
  std::vector<std::string> cases;
  std::vector<std::filesystem::path> families;
  for (const auto& entry : std::filesystem::directory_iterator(source_path("tests/fixtures")))
    if (entry.is_directory()) families.push_back(entry.path());
  std::sort(families.begin(), families.end());
  for (const auto& family : families)
    for (const auto& name : discover_cases(family)) cases.push_back(family.filename().string() + "/" + name);
  return cases;
}

namespace {
// The folders temp_dir made, removed when the test process ends normally (a forked rank,
// which ends by _exit, leaves them to its parent).
class TempDirs {
 public:
  ~TempDirs() {
    if (::getpid() != owner_) return;
    for (const auto& dir : dirs_) {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  }
  void add(const std::filesystem::path& dir) { dirs_.push_back(dir); }

 private:
  pid_t owner_ = ::getpid();
  std::vector<std::filesystem::path> dirs_;
};
TempDirs& temp_dirs() {
  static TempDirs dirs;
  return dirs;
}
}  // namespace

std::filesystem::path temp_dir(const std::string& tag) {
  static int counter = 0;
  auto dir = std::filesystem::temp_directory_path() /
             ("fastdit_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  temp_dirs().add(dir);
  return dir;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_float_vector(), y = b.to_float_vector();
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::fabs(double(x[i]) - y[i]));
  return m;
}

double rel_l2(const Tensor& out, const Tensor& ref) {
  const auto x = out.to_float_vector(), y = ref.to_float_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double fused_projection_bound(DType dtype) { return dtype == DType::Float32 ? 1e-6 : 0x1p-7; }

void expect_parameters_match_dump(const std::filesystem::path& keys_dir, const std::string& variant) {
  std::ifstream in(keys_dir / (variant + ".keys.json"));
  ASSERT_TRUE(in.good()) << variant;
  const auto dump = nlohmann::json::parse(in);
  auto model = build_transformer(keys_dir / (variant + ".config.json"));
  const auto params = model->named_parameters();
  ASSERT_EQ(params.size(), dump["parameters"].size());
  int64_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, param] = params[i];
    const auto& expected = dump["parameters"][i];
    EXPECT_EQ(name, expected[0].get<std::string>()) << "parameter " << i;
    EXPECT_EQ(param->shape, expected[1].get<Shape>()) << name;
    const bool keep_fp32 = param->policy == nn::DTypePolicy::KeepFloat32;
    EXPECT_EQ(keep_fp32 ? "float32" : "bfloat16", expected[2].get<std::string>()) << name;
    total += shape_numel(param->shape);
  }
  EXPECT_EQ(total, dump["num_parameters"].get<int64_t>());
}

std::filesystem::path perturbed_case(const std::filesystem::path& src, const std::string& weight,
                                     int64_t element, float delta) {
  namespace fs = std::filesystem;
  const fs::path dir = temp_dir("perturbed_case");
  fs::create_directories(dir / "transformer");
  for (const char* f : {"inputs.safetensors", "outputs.safetensors", "trace.jsonl", "transformer/config.json"})
    if (fs::exists(src / f)) fs::copy_file(src / f, dir / f);
  const SafetensorsFile weights = SafetensorsFile::open(src / "transformer/diffusion_pytorch_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : weights.names()) {
    Tensor t = weights.tensor(name).clone();
    if (name == weight) t.data<float>()[element] += delta;
    tensors.emplace_back(name, t);
  }
  write_safetensors(dir / "transformer/diffusion_pytorch_model.safetensors", tensors);
  return dir;
}

std::vector<float> gaussian(int64_t rows, int64_t cols, uint64_t seed, int outliers, float sigma) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (float& e : v) e = normal(rng);
  for (int o = 0; o < outliers; ++o) {
    const int64_t col = (o * 7919 + 13) % cols;
    for (int64_t r = 0; r < rows; ++r) v[r * cols + col] *= 50.0f;
  }
  return v;
}

}  // namespace fastdit::testing
