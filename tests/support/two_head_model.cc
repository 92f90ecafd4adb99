#include "support/two_head_model.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "loader/safetensors.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "support/test_support.h"

namespace fastdit::testing {

namespace {

struct TwoHeadConfig : DiTArchConfig {
  int64_t audio_in_channels = 0;
  static TwoHeadConfig from_reader(ConfigReader& r) {
    TwoHeadConfig c;
    ignore_bookkeeping_keys(r);
    c.class_name = kTwoHeadClass;
    c.in_channels = c.out_channels = r.get_int("in_channels");
    c.audio_in_channels = r.get_int("audio_in_channels");
    r.finish();
    FASTDIT_CHECK(c.in_channels > 0 && c.audio_in_channels > 0, r.source(), ": channels must be positive");
    return c;
  }
};

// Both streams' projections; returns them as a tuple, as a multi-stream block does.
class TwoStreamBlock : public nn::Module {
 public:
  explicit TwoStreamBlock(const TwoHeadConfig& c) : Module("TwoStreamBlock") {
    proj_ = add_module<nn::ReplicatedLinear>("proj", c.in_channels, c.in_channels);
    audio_proj_ = add_module<nn::ReplicatedLinear>("audio_proj", c.audio_in_channels, c.audio_in_channels);
  }
  std::pair<Tensor, Tensor> forward(const Tensor& video, const Tensor& audio) const {
    std::pair<Tensor, Tensor> out{proj_->forward(video), audio_proj_->forward(audio)};
    emit(out.first, "out[0]");
    emit(out.second, "out[1]");
    return out;
  }

 private:
  nn::ReplicatedLinear *proj_, *audio_proj_;
};

double factor(const ArgMap& args) {
  int64_t offsets = 0;
  for (int64_t o : arg_int_list(args, "offsets").value_or(std::vector<int64_t>{})) offsets += o;
  return arg_float(args, "scale") * static_cast<double>(arg_int(args, "num_frames")) * static_cast<double>(1 + offsets);
}

class TwoHeadModel : public DiTModel {
 public:
  explicit TwoHeadModel(TwoHeadConfig config) : DiTModel(kTwoHeadClass), config_(std::move(config)) {
    block_ = add_module<TwoStreamBlock>("block", config_);
  }
  const DiTArchConfig& arch_config() const override { return config_; }
  const ParamNameMapping& param_names_mapping() const override { return mapping_; }
  ModelIO io() const override {
    ModelIO io;
    io.tensors = {{"hidden_states", {3}, ElementKind::Floating, true, InputRole::Latents},
                  {"audio_hidden_states", {3}, ElementKind::Floating, true, InputRole::Other},
                  {"timestep", {1}, ElementKind::Number, true, InputRole::Timestep}};
    io.args = {{"num_frames", ArgType::Int, std::nullopt, true},
               {"scale", ArgType::Float, 1.0},
               {"negate_audio", ArgType::Bool, false},
               {"offsets", ArgType::IntList}};
    io.outputs = {"sample", "audio_sample"};
    return io;
  }
  TensorMap example_inputs(const ExampleShape& s, uint64_t seed) const override {
    return {{"hidden_states", ops::random_uniform({s.batch, s.height, config_.in_channels}, DType::Float32, seed, -1.0f, 1.0f)},
            {"audio_hidden_states",
             ops::random_uniform({s.batch, s.width, config_.audio_in_channels}, DType::Float32, seed + 1, -1.0f, 1.0f)},
            {"timestep", ops::random_uniform({s.batch}, DType::Float32, seed + 2, 0.0f, 1.0f)}};
  }

 protected:
  // Device ops only, so that a CUDA graph can capture it.
  TensorMap run(const TensorMap& inputs, const ArgMap& args) override {
    const Tensor& video = inputs.at("hidden_states");
    const Tensor& t = inputs.at("timestep");
    const DType dtype = block_->named_parameters().front().second->value.dtype();
    auto [sample, audio] = block_->forward(ops::cast(video, dtype), ops::cast(inputs.at("audio_hidden_states"), dtype));
    sample = ops::scale(ops::add(sample, t.reshape({t.size(0), 1, 1})), static_cast<float>(factor(args)));
    if (arg_bool(args, "negate_audio")) audio = ops::scale(audio, -1.0f);
    return {{"sample", sample}, {"audio_sample", audio}};
  }

 private:
  TwoHeadConfig config_;
  ParamNameMapping mapping_;
  TwoStreamBlock* block_;
};

float to_bf16(float v) { return bf16_bits_to_float(float_to_bf16_bits(v)); }

// y[b, s, o] = sum_i x[b, s, i] w[o, i] + bias[o], optionally with every operand and the
// result rounded to bfloat16.
std::vector<float> linear_loops(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& bias,
                                int64_t rows, int64_t features, bool bf16) {
  const auto r = [&](float v) { return bf16 ? to_bf16(v) : v; };
  std::vector<float> y(static_cast<size_t>(rows * features));
  for (int64_t s = 0; s < rows; ++s)
    for (int64_t o = 0; o < features; ++o) {
      double acc = r(bias[o]);
      for (int64_t i = 0; i < features; ++i) acc += static_cast<double>(r(x[s * features + i])) * r(w[o * features + i]);
      y[s * features + o] = r(static_cast<float>(acc));
    }
  return y;
}

}  // namespace

void register_two_head_model() {
  static const bool registered = register_dit(kTwoHeadClass, [](ConfigReader& config, const BuildOptions&) {
    return std::make_unique<TwoHeadModel>(TwoHeadConfig::from_reader(config));
  });
  (void)registered;
}

void write_two_head_case(const std::filesystem::path& dir, uint64_t seed) {
  namespace fs = std::filesystem;
  const int64_t batch = 2, tokens = 5, channels = 3, audio_tokens = 7, audio_channels = 2, num_frames = 4;
  const double scale = 0.5;
  const std::vector<int64_t> offsets{2, -4};
  fs::create_directories(dir / "transformer");
  std::ofstream(dir / "transformer/config.json")
      << nlohmann::json{{"_class_name", kTwoHeadClass}, {"in_channels", channels}, {"audio_in_channels", audio_channels}}
             .dump(2);
  std::ofstream(dir / "args.json")
      << nlohmann::json{{"num_frames", num_frames}, {"scale", scale}, {"negate_audio", true}, {"offsets", offsets},
                        {"return_dict", false}}
             .dump(2);
  const Tensor w = random_tensor({channels, channels}, seed), b = random_tensor({channels}, seed + 1);
  const Tensor wa = random_tensor({audio_channels, audio_channels}, seed + 2), ba = random_tensor({audio_channels}, seed + 3);
  write_safetensors(dir / "transformer/diffusion_pytorch_model.safetensors",
                    {{"block.audio_proj.bias", ba}, {"block.audio_proj.weight", wa}, {"block.proj.bias", b},
                     {"block.proj.weight", w}});
  const Tensor x = random_tensor({batch, tokens, channels}, seed + 4);
  const Tensor xa = random_tensor({batch, audio_tokens, audio_channels}, seed + 5);
  const Tensor t = random_tensor({batch}, seed + 6, 0.0f, 1.0f);
  write_safetensors(dir / "inputs.safetensors", {{"hidden_states", x}, {"audio_hidden_states", xa}, {"timestep", t}});
  NamedTensors outputs;
  for (bool bf16 : {false, true}) {
    std::vector<float> video = linear_loops(x.to_float_vector(), w.to_float_vector(), b.to_float_vector(),
                                            batch * tokens, channels, bf16);
    const auto tv = t.to_float_vector();
    const double factor = scale * num_frames * (1 + offsets[0] + offsets[1]);
    for (size_t i = 0; i < video.size(); ++i)
      video[i] = static_cast<float>((video[i] + tv[i / static_cast<size_t>(tokens * channels)]) * factor);
    std::vector<float> audio = linear_loops(xa.to_float_vector(), wa.to_float_vector(), ba.to_float_vector(),
                                            batch * audio_tokens, audio_channels, bf16);
    for (float& v : audio) v = -v;
    const std::string suffix = bf16 ? "_bf16" : "";
    outputs.emplace_back("sample" + suffix, Tensor::from_vector(video, {batch, tokens, channels}));
    outputs.emplace_back("audio_sample" + suffix, Tensor::from_vector(audio, {batch, audio_tokens, audio_channels}));
  }
  write_safetensors(dir / "outputs.safetensors", outputs);
}

}  // namespace fastdit::testing
