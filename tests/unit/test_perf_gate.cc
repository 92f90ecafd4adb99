// The perf gate on synthetic records (tests/fixtures/perf, made by make_fixtures.py):
// identity hashes, benchmark definitions, every `perf check` status, every reseed
// rejection and an accepted reseed with its backup, and the HTML report.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "loader/transformer_loader.h"
#include "perf/check.h"
#include "perf/definition.h"
#include "perf/environment.h"
#include "perf/report.h"
#include "perf/reseed.h"
#include "perf/sha256.h"
#include "support/test_support.h"

namespace fastdit::perf {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& name) { return testing::source_path("tests/fixtures/perf/" + name); }
PerfRecord candidate(const std::string& name) { return read_record_file(fixture("records/" + name + ".json")); }
const BaselineStore& fixture_store() {
  static const BaselineStore store(fixture("baselines"));
  return store;
}

// A writable copy of the fixture store.
BaselineStore store_copy() {
  const fs::path dir = testing::temp_dir("perf_store");
  fs::copy(fixture("baselines"), dir, fs::copy_options::recursive);
  return BaselineStore(dir);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PerfIdentity, Sha256KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // 56 bytes: the length no longer fits the first padded block.
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(PerfIdentity, FingerprintIgnoresKeyOrder) {
  const auto a = nlohmann::json::parse(R"({"b": 1, "a": {"y": 2, "x": [1, 2]}})");
  const auto b = nlohmann::json::parse(R"({"a": {"x": [1, 2], "y": 2}, "b": 1})");
  EXPECT_EQ(fingerprint_id("rcp", a), fingerprint_id("rcp", b));
  EXPECT_NE(fingerprint_id("rcp", a), fingerprint_id("rcp", nlohmann::json::parse(R"({"b": 2})")));
  EXPECT_EQ(fingerprint_id("hw", a).size(), 3 + 16u);
}

TEST(PerfDefinition, ShippedDefinitionsAreTheCudaBackendWorkload) {
  for (const char* variant : {"1.3b", "14b"}) {
    const auto def = read_benchmark_definition(
        testing::source_path(std::string("bench/configs/wan2.1-t2v-") + variant + "-480p-forward.json"));
    EXPECT_EQ(def.benchmark_id, std::string("wan2.1-t2v-") + variant + "-480p-forward");
    EXPECT_EQ(def.video.frames, 81);
    EXPECT_EQ(def.video.height, 480);
    EXPECT_EQ(def.video.width, 832);
    EXPECT_EQ(def.video.text_len, 512);
    EXPECT_EQ(def.dtype, "bfloat16");
    EXPECT_EQ(def.device, "cuda");
    EXPECT_TRUE(fs::exists(def.model_config));
    EXPECT_EQ(def.limits_for("NVIDIA H100 80GB HBM3").gpu_key, "H100");
    EXPECT_EQ(def.limits_for("NVIDIA A10").gpu_key, "default");
    EXPECT_GT(def.regression_thresholds.at("peak_memory_mb").absolute, 0);
  }
}

TEST(PerfDefinition, Fp8DefinitionsRunThePrecision) {
  for (const char* base : {"wan2.1-t2v-1.3b-480p-forward", "wan2.1-t2v-14b-480p-forward", "flux1-dev-forward",
                           "ltx2-19b-forward"}) {
    const auto bf16 = read_benchmark_definition(testing::source_path(std::string("bench/configs/") + base + ".json"));
    const auto fp8 = read_benchmark_definition(testing::source_path(std::string("bench/configs/") + base + "-fp8.json"));
    EXPECT_EQ(bf16.precision, "bf16") << base;
    EXPECT_EQ(fp8.precision, "fp8") << base;
    EXPECT_EQ(fp8.benchmark_id, std::string(base) + "-fp8");
    EXPECT_EQ(fp8.forward_bench_spec(false).load.precision, Precision::Fp8) << base;
    EXPECT_EQ(bf16.forward_bench_spec(false).load.precision, Precision::Bf16) << base;
    // The same workload otherwise.
    EXPECT_EQ(fp8.model_config, bf16.model_config) << base;
    EXPECT_EQ(fp8.video.frames, bf16.video.frames) << base;
    EXPECT_EQ(fp8.video.height, bf16.video.height) << base;
    EXPECT_EQ(fp8.dtype, bf16.dtype) << base;
  }
}

TEST(PerfDefinition, DefinitionsAndModelConfigsAreToldApart) {
  EXPECT_TRUE(is_benchmark_definition(nlohmann::json::parse(R"({"benchmark_id": "x"})")));
  EXPECT_FALSE(is_benchmark_definition(nlohmann::json::parse(R"({"_class_name": "WanTransformer3DModel"})")));
}

TEST(PerfDefinition, BadDefinitionsNameTheProblem) {
  const fs::path dir = testing::temp_dir("perf_def");
  nlohmann::json good = nlohmann::json::parse(read_text(fixture("tiny-wan-cpu-forward.json")));
  good["model"]["config"] = fixture("../wan/t2v/transformer/config.json").string();
  const auto error_for = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json def = good;
    edit(def);
    std::ofstream(dir / "def.json") << def.dump();
    return error_of([&] { read_benchmark_definition(dir / "def.json"); });
  };
  EXPECT_EQ(error_for([](auto&) {}), "");
  EXPECT_NE(error_for([](auto& d) { d["iterationz"] = 3; }).find("'iterationz'"), std::string::npos);
  EXPECT_NE(error_for([](auto& d) { d.erase("benchmark_version"); }).find("benchmark_version"), std::string::npos);
  EXPECT_NE(error_for([](auto& d) { d["shape"]["frames"] = 0; }).find("frames"), std::string::npos);
  EXPECT_NE(error_for([](auto& d) { d["benchmark_id"] = "a/b"; }).find("benchmark_id"), std::string::npos);
  EXPECT_NE(error_for([](auto& d) { d["regression_thresholds"] = {{"speed", {{"percent", 1}, {"absolute", 1}}}}; })
                .find("unknown metric 'speed'"),
            std::string::npos);
  EXPECT_NE(error_for([](auto& d) { d["thresholds"] = {{"H100", {{"max_latency", 1}}}}; }).find("max_latency"),
            std::string::npos);
  EXPECT_NE(error_for([](auto& d) { d["model"]["config"] = "missing.json"; }).find("does not exist"),
            std::string::npos);
  EXPECT_NE(error_for([](auto& d) { d["run"]["precision"] = "fp4"; }).find("precision"), std::string::npos);
}

TEST(PerfMetrics, DirectionAndBothThresholds) {
  const MetricChange slower = worse_by(*find_metric("latency_s"), 1.2, 1.0);
  EXPECT_NEAR(slower.delta, 0.2, 1e-12);
  EXPECT_NEAR(slower.percent, 20, 1e-9);
  EXPECT_TRUE(slower.exceeds({8, 0.1}));
  EXPECT_FALSE(slower.exceeds({8, 0.5}));   // percent exceeded, absolute not
  EXPECT_FALSE(slower.exceeds({25, 0.1}));  // absolute exceeded, percent not
  const MetricChange fewer_frames = worse_by(*find_metric("throughput_fps"), 90, 100);
  EXPECT_NEAR(fewer_frames.delta, 10, 1e-12);  // higher is better: a drop is worse
  EXPECT_LT(worse_by(*find_metric("throughput_fps"), 110, 100).delta, 0);
}

CheckResult check(const std::string& name) { return check_record(candidate(name), fixture_store(), {}); }

TEST(PerfCheck, PassUsesTheMedianOfTheLastFiveEligible) {
  const CheckResult r = check("pass");
  EXPECT_EQ(r.status, CheckStatus::Pass) << r.reason;
  EXPECT_EQ(r.eligible_records, 7);  // the regression and the failed run are not eligible
  EXPECT_EQ(r.baseline_records, 5);
  ASSERT_EQ(r.metrics.front().metric, "latency_s");
  EXPECT_DOUBLE_EQ(*r.metrics.front().baseline, 1.00);
}

TEST(PerfCheck, PercentAloneIsNotARegression) {
  const CheckResult r = check("within_absolute");  // 15 % slower, 0.15 s < 0.2 s
  EXPECT_EQ(r.status, CheckStatus::Pass) << r.reason;
  EXPECT_GT(r.metrics.front().change.percent, 8);
}

TEST(PerfCheck, Regressions) {
  const CheckResult latency = check("latency_regression");
  EXPECT_EQ(latency.status, CheckStatus::Regression);
  EXPECT_NE(latency.reason.find("latency_s"), std::string::npos);
  const CheckResult memory = check("memory_regression");
  EXPECT_EQ(memory.status, CheckStatus::Regression);
  EXPECT_NE(memory.reason.find("peak_memory_mb"), std::string::npos);
  const CheckResult limit = check("static_breach");  // no history at all, over the 2 s limit
  EXPECT_EQ(limit.status, CheckStatus::Regression);
  EXPECT_NE(limit.reason.find("limit"), std::string::npos);
  EXPECT_TRUE(status_fails(CheckStatus::Regression));
}

TEST(PerfCheck, CalibrationNeeded) {
  const CheckResult none = check("new_hardware");
  EXPECT_EQ(none.status, CheckStatus::CalibrationNeeded);
  EXPECT_EQ(none.eligible_records, 0);
  const CheckResult one = check("h200_calibrating");
  EXPECT_EQ(one.status, CheckStatus::CalibrationNeeded);
  EXPECT_EQ(one.eligible_records, 1);
  EXPECT_EQ(check_record(candidate("h200_calibrating"), fixture_store(), {5, 1}).status, CheckStatus::Pass);
  EXPECT_FALSE(status_fails(CheckStatus::CalibrationNeeded));
}

TEST(PerfCheck, RecipeMismatchAndFailedRun) {
  const CheckResult mismatch = check("recipe_changed");
  EXPECT_EQ(mismatch.status, CheckStatus::RecipeMismatch);
  EXPECT_NE(mismatch.reason.find("rcp-test0recipe0a"), std::string::npos);
  EXPECT_EQ(check("failed_run").status, CheckStatus::RunFailed);
  EXPECT_TRUE(status_fails(CheckStatus::RecipeMismatch));
  EXPECT_TRUE(status_fails(CheckStatus::RunFailed));
}

TEST(PerfCheck, TableNamesEveryMetricAndTheStatus) {
  const std::string table = format_check(candidate("latency_regression"), check("latency_regression"));
  for (const char* text : {"latency_s", "throughput_fps", "peak_memory_mb", "REGRESSED", "status: REGRESSION"})
    EXPECT_NE(table.find(text), std::string::npos) << text << "\n" << table;
}

std::vector<PerfRecord> batch(std::initializer_list<const char*> names) {
  std::vector<PerfRecord> records;
  for (const char* name : names) records.push_back(candidate(name));
  return records;
}

std::string reseed_error(const BaselineStore& store, std::initializer_list<const char*> names,
                         const std::string& reason = "test") {
  return error_of([&] { reseed(batch(names), store, {reason, testing::temp_dir("perf_backup"), {}}); });
}

TEST(PerfReseed, RejectionsLeaveTheStoreAlone) {
  const BaselineStore store = store_copy();
  const fs::path h100 = store.cohort_file(candidate("pass"));
  const std::string before = read_text(h100);
  const auto rejected = [&](std::initializer_list<const char*> names, const char* rule) {
    const std::string error = reseed_error(store, names);
    EXPECT_NE(error.find("reseed rejected"), std::string::npos) << error;
    EXPECT_NE(error.find(rule), std::string::npos) << error;
  };
  rejected({"reseed_1", "reseed_other_model"}, "mixes model ids");
  rejected({"reseed_1", "reseed_other_gpu"}, "mixes GPU types");
  rejected({"reseed_1", "pass"}, "mixes cohorts");
  rejected({"reseed_1", "reseed_outlier", "reseed_2"}, "does not agree");
  rejected({"failed_run"}, "failed run");
  rejected({"reseed_1", "reseed_1"}, "already in the batch or the baseline");
  rejected({"recipe_changed"}, "bump benchmark_version");
  rejected({}, "no records");
  EXPECT_NE(reseed_error(store, {"reseed_1"}, "").find("--reason"), std::string::npos);
  EXPECT_EQ(read_text(h100), before);
  EXPECT_FALSE(fs::exists(store.cohort_file(candidate("reseed_1"))));
}

TEST(PerfReseed, FirstSeedThenCheck) {
  const BaselineStore store = store_copy();
  const ReseedOutcome outcome = reseed(batch({"reseed_1", "reseed_2", "reseed_3"}), store,
                                       {"driver upgrade", testing::temp_dir("perf_backup"), {}});
  EXPECT_TRUE(outcome.backup.empty());  // nothing to back up
  EXPECT_EQ(outcome.eligible_after, 3);
  EXPECT_DOUBLE_EQ(outcome.after.at("latency_s"), 0.91);
  const auto history = BaselineStore::read_cohort_file(outcome.cohort_file);
  ASSERT_EQ(history.size(), 3u);
  for (const PerfRecord& r : history) {
    EXPECT_TRUE(r.reseeded && r.eligible());
    EXPECT_EQ(r.json["reseed"]["reason"], "driver upgrade");
  }
  EXPECT_NE(reseed_error(store, {"reseed_2"}).find("already in the batch or the baseline"), std::string::npos);
}

TEST(PerfReseed, ShiftBacksUpTheOldBaseline) {
  const BaselineStore store = store_copy();
  const fs::path h100 = store.cohort_file(candidate("pass"));
  const std::string old_text = read_text(h100);
  const fs::path backups = testing::temp_dir("perf_backup");
  const ReseedOutcome outcome = reseed(batch({"pass", "within_absolute"}), store, {"new image", backups, {}});
  ASSERT_FALSE(outcome.backup.empty());
  EXPECT_EQ(read_text(outcome.backup / h100.filename()), old_text);
  EXPECT_NE(read_text(outcome.backup / "PROVENANCE.txt").find("new image"), std::string::npos);
  EXPECT_EQ(BaselineStore::read_cohort_file(h100).size(), 11u);
  EXPECT_DOUBLE_EQ(outcome.before.at("latency_s"), 1.00);
  EXPECT_DOUBLE_EQ(outcome.batch.at("latency_s"), 1.10);
}

TEST(PerfStore, BadLinesAndForeignRecordsAreErrors) {
  const BaselineStore store = store_copy();
  const fs::path h100 = store.cohort_file(candidate("pass"));
  std::ofstream(h100, std::ios::app) << "{not json\n";
  EXPECT_NE(error_of([&] { BaselineStore::read_cohort_file(h100); }).find(".jsonl:10"), std::string::npos);
  const fs::path h200 = store.cohort_file(candidate("h200_calibrating"));
  std::ofstream(h200, std::ios::app) << candidate("pass").json.dump() << "\n";
  EXPECT_NE(error_of([&] { BaselineStore::read_cohort_file(h200); }).find("another cohort"), std::string::npos);
  EXPECT_NE(error_of([] { read_record_file(testing::source_path("tests/fixtures/wan/t2v/transformer/config.json")); })
                .find("result_schema_version"),
            std::string::npos);
}

TEST(PerfReport, StaticPageWithOneChartPerMetric) {
  const std::string html = render_report_html(fixture_store(), {});
  size_t svgs = 0;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) ++svgs;
  EXPECT_EQ(svgs, 12u);  // two cohorts, six gated metrics each
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_NE(html.find("fastdit-page-height"), std::string::npos);
  EXPECT_NE(html.find("median of last 5 = 1<"), std::string::npos);
  EXPECT_NE(html.find("class=\"regression\""), std::string::npos);
  // A store without records is an error, not an empty page that looks like a report.
  EXPECT_NE(error_of([] { render_report_html(BaselineStore(testing::temp_dir("perf_empty")), {}); }).find("no records"),
            std::string::npos);
}

}  // namespace
}  // namespace fastdit::perf
