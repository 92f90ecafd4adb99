// The model I/O declaration: call checking, typed arguments from JSON, and a synthetic
// two-head model (support/two_head_model.h) through parity, the trace and the CLI's run
// and parity commands with both heads and an args.json.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "parity/parity_case.h"
#include "support/test_support.h"
#include "support/two_head_model.h"
#include "trace/activation_trace.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

ModelIO example_io() {
  ModelIO io;
  io.tensors = {{"hidden_states", {3}, ElementKind::Floating, true, InputRole::Latents},
                {"timestep", {1, 2}, ElementKind::Number, true, InputRole::Timestep},
                {"mask", {2}, ElementKind::Bool, false}};
  io.args = {{"num_frames", ArgType::Int, std::nullopt, true},
             {"fps", ArgType::Float, 24.0},
             {"causal", ArgType::Bool, false},
             {"blocks", ArgType::IntList},
             {"ratios", ArgType::FloatList}};
  io.outputs = {"sample", "audio_sample"};
  return io;
}

TensorMap example_inputs() {
  return {{"hidden_states", testing::random_tensor({1, 4, 2}, 1)},
          {"timestep", Tensor::from_vector<int64_t>({3}, {1})}};
}

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ModelIO, CheckCallFillsDefaultsAndCoercesIntsToFloats) {
  const ArgMap args = check_call(example_io(), "M", example_inputs(), {{"num_frames", int64_t{2}}, {"fps", int64_t{25}}});
  EXPECT_EQ(arg_int(args, "num_frames"), 2);
  EXPECT_DOUBLE_EQ(arg_float(args, "fps"), 25.0);
  EXPECT_FALSE(arg_bool(args, "causal"));
  EXPECT_FALSE(arg_int_list(args, "blocks").has_value());  // optional, absent: the reference's None
}

TEST(ModelIO, CheckCallNamesTheOffendingInput) {
  const ModelIO io = example_io();
  const ArgMap frames{{"num_frames", int64_t{1}}};
  TensorMap inputs = example_inputs();
  inputs["latents"] = testing::random_tensor({1}, 2);
  EXPECT_NE(error_of([&] { check_call(io, "M", inputs, frames); }).find("'latents' is not an input"),
            std::string::npos);
  inputs = example_inputs();
  inputs["hidden_states"] = testing::random_tensor({4, 2}, 3);
  EXPECT_NE(error_of([&] { check_call(io, "M", inputs, frames); }).find("'hidden_states' must have rank 3"),
            std::string::npos);
  inputs["hidden_states"] = Tensor::from_vector<int64_t>({1, 2, 3, 4, 5, 6, 7, 8}, {1, 4, 2});
  EXPECT_NE(error_of([&] { check_call(io, "M", inputs, frames); }).find("must be a floating-point tensor"),
            std::string::npos);
  inputs = example_inputs();
  inputs.erase("timestep");
  EXPECT_NE(error_of([&] { check_call(io, "M", inputs, frames); }).find("missing input 'timestep'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_call(io, "M", example_inputs(), {}); }).find("missing argument 'num_frames'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_call(io, "M", example_inputs(), {{"num_frames", 2.5}}); })
                .find("'num_frames' must be int, got 2.5"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_call(io, "M", example_inputs(), {{"num_frames", int64_t{1}}, {"fsp", 1.0}}); })
                .find("'fsp' is not an argument"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_call(io, "M", example_inputs(), {{"num_frames", int64_t{1}}, {"fps", NAN}}); })
                .find("'fps' must be finite"),
            std::string::npos);
}

TEST(ModelIO, ArgsFromJsonTypesByTheDeclaration) {
  const auto json = nlohmann::json::parse(
      R"({"num_frames": 3, "fps": 24, "causal": true, "blocks": [0, 2], "ratios": [1, 0.5],
          "return_dict": false, "attention_kwargs": null, "spatio": null})");
  ModelIO io = example_io();
  io.args.push_back({"spatio", ArgType::IntList});
  const ArgMap args = args_from_json(io, json, "args.json");
  EXPECT_EQ(arg_int(args, "num_frames"), 3);
  EXPECT_DOUBLE_EQ(arg_float(args, "fps"), 24.0);
  EXPECT_TRUE(arg_bool(args, "causal"));
  EXPECT_EQ(*arg_int_list(args, "blocks"), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(*arg_float_list(args, "ratios"), (std::vector<double>{1.0, 0.5}));
  EXPECT_FALSE(args.count("spatio"));       // null: absent
  EXPECT_FALSE(args.count("return_dict"));  // a reference-only argument, dropped
  for (const char* bad : {R"({"num_frames": "3"})", R"({"num_frames": [3]})", R"({"blocks": [0, true]})",
                          R"({"causal": 1})", R"({"frames": 3})", R"([1, 2])"}) {
    const std::string message = error_of([&] { args_from_json(io, nlohmann::json::parse(bad), "case/args.json"); });
    EXPECT_EQ(message.rfind("case/args.json: ", 0), 0u) << bad << " -> " << message;
  }
}

class TwoHeadCase : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::register_two_head_model();
    dir_ = testing::temp_dir("two_head_case");
    testing::write_two_head_case(dir_, 7);
  }
  fs::path dir_;
};

TEST_F(TwoHeadCase, ParityJudgesBothHeadsWithTheirArgs) {
  const ParityResult f32 = run_parity_case(dir_, Device::cpu(), DType::Float32);
  ASSERT_EQ(f32.heads.size(), 2u);
  EXPECT_EQ(f32.heads[0].name, "sample");
  EXPECT_EQ(f32.heads[1].name, "audio_sample");
  EXPECT_TRUE(f32.pass) << head_lines(f32);
  EXPECT_LE(f32.rel_l2, 1e-6) << head_lines(f32);
  const ParityResult bf16 = run_parity_case(dir_, Device::cpu(), DType::BFloat16);
  EXPECT_TRUE(bf16.pass) << head_lines(bf16);
  EXPECT_GT(bf16.rel_l2, 1e-6) << "really ran in bfloat16";
  for (const auto& head : bf16.heads) EXPECT_NE(head.bound_note.find("reference bf16"), std::string::npos);
}

TEST_F(TwoHeadCase, ParityFailsWhenOneHeadIsWrongAndSaysWhich) {
  const SafetensorsFile outputs = SafetensorsFile::open(dir_ / "outputs.safetensors");
  NamedTensors changed;
  for (const auto& name : outputs.names()) {
    Tensor t = outputs.tensor(name).clone();
    if (name == "audio_sample") t.data<float>()[0] += 1.0f;
    changed.emplace_back(name, t);
  }
  write_safetensors(dir_ / "outputs.safetensors", changed);
  const ParityResult r = run_parity_case(dir_, Device::cpu(), DType::Float32);
  EXPECT_FALSE(r.pass);
  EXPECT_TRUE(r.heads[0].pass);
  EXPECT_FALSE(r.heads[1].pass);
  EXPECT_EQ(r.rel_l2, r.heads[1].rel_l2);  // the last line reports the worst head
}

TEST_F(TwoHeadCase, ACaseWithoutAHeadOrWithAStrayTensorIsAnError) {
  const SafetensorsFile outputs = SafetensorsFile::open(dir_ / "outputs.safetensors");
  NamedTensors only_sample{{"sample", outputs.tensor("sample")}};
  write_safetensors(dir_ / "outputs.safetensors", only_sample);
  EXPECT_NE(error_of([&] { run_parity_case(dir_, Device::cpu(), DType::Float32); }).find("no 'audio_sample' tensor"),
            std::string::npos);
  NamedTensors stray{{"sample", outputs.tensor("sample")}, {"audio_sample", outputs.tensor("audio_sample")},
                     {"video_bf16", outputs.tensor("sample")}};
  write_safetensors(dir_ / "outputs.safetensors", stray);
  EXPECT_NE(error_of([&] { run_parity_case(dir_, Device::cpu(), DType::Float32); })
                .find("'video_bf16' is not an output head"),
            std::string::npos);
}

TEST_F(TwoHeadCase, ARequiredArgumentMissingFromArgsJsonIsAnError) {
  std::ofstream(dir_ / "args.json") << R"({"scale": 2})";
  EXPECT_NE(error_of([&] { run_parity_case(dir_, Device::cpu(), DType::Float32); })
                .find("missing argument 'num_frames'"),
            std::string::npos);
}

TEST_F(TwoHeadCase, TraceRecordsTupleItemsAsFastVideoLabelsThem) {
  const fs::path out = testing::temp_dir("two_head_trace") / "trace.jsonl";
  auto loaded = load_transformer(dir_ / "transformer", {});
  trace::TraceConfig config;
  config.enabled = true;
  config.stats = {trace::Stat::Sum, trace::Stat::Shape};
  config.output = out.string();
  auto tracer = std::make_shared<trace::ActivationTrace>(config);
  EXPECT_EQ(tracer->attach(*loaded.model), 3u);
  const ModelIO io = loaded.model->io();
  loaded.model->forward(read_model_inputs(dir_ / "inputs.safetensors", *loaded.model, Device::cpu()),
                        read_args_file(dir_ / "args.json", io));
  tracer.reset();
  std::vector<std::string> labels;
  for (const auto& r : trace::read_trace(out.string())) labels.push_back(r.module + " " + r.tensor);
  EXPECT_EQ(labels, (std::vector<std::string>{"block.proj out", "block.audio_proj out", "block out[0]",
                                              "block out[1]"}));
}

// Runs the CLI built with the test models; returns its exit code, stdout in `out`.
int run_cli(const std::string& args, std::string& out) {
  const fs::path log = testing::temp_dir("two_head_cli") / "stdout";
  const int status = std::system((std::string(FASTDIT_TEST_CLI) + " " + args + " >" + log.string() + " 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  out = text.str();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(TwoHeadCase, CliParityPrintsALinePerHeadThenPass) {
  std::string out;
  ASSERT_EQ(run_cli("parity " + dir_.string(), out), 0) << out;
  EXPECT_NE(out.find("head      sample [2, 5, 3] "), std::string::npos) << out;
  EXPECT_NE(out.find("head      audio_sample [2, 7, 2] "), std::string::npos) << out;
  const std::string last = out.substr(out.rfind("\n", out.size() - 2) + 1);
  EXPECT_EQ(last.rfind("PASS rel_l2=", 0), 0u) << out;
}

TEST_F(TwoHeadCase, CliRunWithArgsWritesEveryHeadUnderItsName) {
  const fs::path written = testing::temp_dir("two_head_run") / "out.safetensors";
  std::string out;
  ASSERT_EQ(run_cli("run " + (dir_ / "transformer").string() + " --inputs " + (dir_ / "inputs.safetensors").string() +
                        " --args " + (dir_ / "args.json").string() + " --output " + written.string() + " --compare " +
                        (dir_ / "outputs.safetensors").string() + " --max-rel-l2 1e-6",
                    out),
            0)
      << out;
  const SafetensorsFile result = SafetensorsFile::open(written);
  EXPECT_EQ(result.names(), (std::vector<std::string>{"audio_sample", "sample"}));
  const SafetensorsFile reference = SafetensorsFile::open(dir_ / "outputs.safetensors");
  for (const char* head : {"sample", "audio_sample"})
    EXPECT_LE(testing::rel_l2(result.tensor(head), reference.tensor(head)), 1e-6) << head;
  EXPECT_NE(out.find("head audio_sample rel_l2="), std::string::npos) << out;
  // Without the arguments the required num_frames is missing: exit 2 naming it.
  ASSERT_EQ(run_cli("run " + (dir_ / "transformer").string() + " --inputs " + (dir_ / "inputs.safetensors").string() +
                        " --output " + written.string(),
                    out),
            2)
      << out;
  EXPECT_NE(out.find("error: TwoHeadTestModel: missing argument 'num_frames'"), std::string::npos) << out;
}

}  // namespace
}  // namespace fastdit
