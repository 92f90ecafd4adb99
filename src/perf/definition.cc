#include "perf/definition.h"

#include <regex>

#include "configs/config_reader.h"
#include "core/dtype.h"
#include "core/files.h"
#include "loader/transformer_loader.h"

namespace fastdit::perf {
namespace {

// A definition nests four levels (thresholds.<gpu>.<limit>); far deeper is no definition.
constexpr size_t kMaxDefinitionDepth = 32;

// A nested object read as strictly as the top level.
ConfigReader nested(ConfigReader& parent, const std::string& key) {
  FASTDIT_CHECK(parent.has(key) && parent.json().at(key).is_object(), parent.source(), ": '", key,
                "' must be an object");
  parent.ignore(key, "read by its own reader");
  return ConfigReader(parent.json().at(key), parent.source() + ": " + key);
}

int positive_int(ConfigReader& reader, const std::string& key, int64_t minimum = 1) {
  const int64_t value = reader.get_int(key);
  FASTDIT_CHECK(value >= minimum && value <= 1'000'000, reader.source(), ": '", key, "' must be at least ", minimum);
  return static_cast<int>(value);
}

void read_model(BenchmarkDefinition& def, ConfigReader& top) {
  ConfigReader model = nested(top, "model");
  def.model_id = model.get_string("model_id");
  def.model_config = def.path.parent_path() / model.get_string("config");
  FASTDIT_CHECK(std::filesystem::exists(def.model_config), model.source(), ": config ", def.model_config,
                " does not exist (paths are relative to the definition)");
  def.seed = static_cast<uint64_t>(model.get_int64("seed", 0));
  model.finish();
}

void read_run(BenchmarkDefinition& def, ConfigReader& top) {
  ConfigReader run = nested(top, "run");
  def.device = run.get_string("device");
  Device::parse(def.device);
  def.dtype = run.get_string("dtype");
  FASTDIT_CHECK(def.dtype == "float32" || def.dtype == "bfloat16" || def.dtype == "float16", run.source(),
                ": dtype must be float32, bfloat16 or float16");
  def.fuse = run.get_string("fuse", "auto");
  FASTDIT_CHECK(def.fuse == "auto" || def.fuse == "on" || def.fuse == "off", run.source(), ": fuse must be auto, on or off");
  def.precision = run.get_string("precision", "bf16");
  parse_precision(def.precision, run.source() + ": precision");
  def.cuda_graph = run.get_bool("cuda_graph", false);
  FASTDIT_CHECK(!def.cuda_graph || Device::parse(def.device).is_cuda(), run.source(),
                ": cuda_graph needs a cuda device");
  run.finish();
}

void read_shape(BenchmarkDefinition& def, ConfigReader& top) {
  ConfigReader shape = nested(top, "shape");
  VideoShape& v = def.video;
  v.batch = positive_int(shape, "batch");
  v.frames = positive_int(shape, "frames");
  v.height = positive_int(shape, "height");
  v.width = positive_int(shape, "width");
  v.text_len = positive_int(shape, "text_len");
  const std::vector<int64_t> stride = shape.get_int_list("vae_stride", std::vector<int64_t>{4, 8, 8});
  FASTDIT_CHECK(stride.size() == 3, shape.source(), ": vae_stride has 3 entries (t, h, w)");
  std::copy(stride.begin(), stride.end(), v.vae_stride.begin());
  shape.finish();
  v.latent();
}

void read_limits(BenchmarkDefinition& def, ConfigReader& top) {
  if (!top.has("thresholds")) {
    top.ignore("thresholds", "optional");
    return;
  }
  const nlohmann::json& thresholds = top.json().at("thresholds");
  top.ignore("thresholds", "read below");
  FASTDIT_CHECK(thresholds.is_object(), top.source(), ": 'thresholds' must map GPU names to limits");
  for (const auto& [gpu_key, limits] : thresholds.items())
    def.limits[gpu_key] = read_static_limits(limits, top.source() + ": thresholds." + gpu_key, gpu_key);
}

}  // namespace

bool is_benchmark_definition(const nlohmann::json& json) {
  return json.is_object() && json.contains("benchmark_id");
}

BenchmarkDefinition read_benchmark_definition(const std::filesystem::path& path) {
  return parse_benchmark_definition(read_regular_file(path), path);
}

BenchmarkDefinition parse_benchmark_definition(std::string_view text, const std::filesystem::path& path) {
  check_json_depth(text, kMaxDefinitionDepth, path.string());
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FASTDIT_CHECK(!json.is_discarded(), path.string(), ": not valid JSON");
  ConfigReader top(std::move(json), path.string());
  BenchmarkDefinition def;
  def.path = path;
  FASTDIT_CHECK(top.get_int("config_schema_version") == 1, path, ": config_schema_version must be 1");
  def.benchmark_id = top.get_string("benchmark_id");
  FASTDIT_CHECK(std::regex_match(def.benchmark_id, std::regex("[A-Za-z0-9._-]+")), path,
                ": benchmark_id may hold only letters, digits, '.', '_' and '-'");
  def.workload_id = top.get_string("workload_id");
  def.variant_id = top.get_string("variant_id");
  def.benchmark_version = positive_int(top, "benchmark_version");
  def.description = top.get_string("description", "");
  read_model(def, top);
  read_run(def, top);
  read_shape(def, top);
  def.steps = positive_int(top, "steps");
  def.warmups = positive_int(top, "warmups", 0);
  def.iterations = positive_int(top, "iterations");
  def.components = top.get_bool("components", false);
  def.regression_thresholds = default_thresholds();
  if (top.has("regression_thresholds"))
    def.regression_thresholds = read_thresholds(top.json().at("regression_thresholds"),
                                                path.string() + ": regression_thresholds", def.regression_thresholds);
  top.ignore("regression_thresholds", "read above");
  read_limits(def, top);
  top.finish();
  return def;
}

StaticLimits BenchmarkDefinition::limits_for(const std::string& device_name) const {
  for (const auto& [key, value] : limits)
    if (key != "default" && device_name.find(key) != std::string::npos) return value;
  const auto fallback = limits.find("default");
  return fallback != limits.end() ? fallback->second : StaticLimits{"none", {}, {}};
}

ForwardBenchSpec BenchmarkDefinition::forward_bench_spec(bool with_components) const {
  ForwardBenchSpec spec;
  spec.model = model_config;
  spec.random_weights = true;
  spec.load.device = Device::parse(device);
  spec.load.dtype = parse_dtype(dtype);
  spec.load.progress = true;
  if (fuse != "auto") spec.load.fuse_projections = fuse == "on";
  spec.load.precision = parse_precision(precision, "precision");
  spec.video = video;
  spec.steps = steps;
  spec.warmups = warmups;
  spec.iterations = iterations;
  spec.seed = seed;
  spec.components = components || with_components;
  spec.cuda_graph = cuda_graph;
  return spec;
}

}  // namespace fastdit::perf
