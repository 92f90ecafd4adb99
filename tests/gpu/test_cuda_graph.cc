// CUDA graph replay of whole forwards (CapturedForward, DeviceGraph): a replay runs the
// eager forward's kernels, so its output equals the eager output bit for bit; it re-reads
// its inputs every time; its memory and the rest of the process's stay apart; what a
// graph cannot hold fails at capture with an error naming it. Also prints eager vs
// replayed forward times on a launch-bound shape.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>

#include "backends/cuda/cuda_device.h"
#include "core/device_graph.h"
#include "loader/transformer_loader.h"
#include "models/captured_forward.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "sampling/denoise.h"
#include "sampling/pipeline_folder.h"
#include "loader/safetensors.h"
#include "support/test_support.h"
#include "support/two_head_model.h"

namespace fastdit {
namespace {

const Device kGpu = Device::cuda(0);

std::filesystem::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/" + name); }

struct CaseModel {
  LoadedTransformer loaded;
  TensorMap inputs;  // the case's, on the GPU
};

CaseModel load_case(const std::string& name, DType dtype) {
  CaseModel c;
  LoadOptions options;
  options.device = kGpu;
  options.dtype = dtype;
  c.loaded = load_transformer(case_dir(name) / "transformer", options);
  c.inputs = read_model_inputs(case_dir(name) / "inputs.safetensors", *c.loaded.model, kGpu);
  return c;
}

// The bytes of a tensor, on the host.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor host = t.to(Device::cpu()).contiguous();
  const auto* p = static_cast<const unsigned char*>(host.data_ptr());
  return {p, p + host.nbytes()};
}

void expect_same_bits(const Tensor& replayed, const Tensor& eager, const std::string& what) {
  ASSERT_EQ(replayed.shape(), eager.shape()) << what;
  ASSERT_EQ(replayed.dtype(), eager.dtype()) << what;
  EXPECT_TRUE(bytes_of(replayed) == bytes_of(eager))
      << what << ": replay differs from the eager forward, max |diff| " << testing::max_abs_diff(replayed, eager);
}

// Other inputs of the same signature: latents and timestep changed.
TensorMap other_inputs(const TensorMap& inputs, uint64_t seed) {
  TensorMap other = inputs;
  const Tensor& latents = inputs.at("hidden_states");
  other["hidden_states"] = testing::random_tensor(latents.shape(), seed).to(kGpu, latents.dtype());
  const Tensor& t = inputs.at("timestep");
  other["timestep"] = testing::random_tensor(t.shape(), seed + 1, 0.0f, 1000.0f).to(kGpu, t.dtype());
  return other;
}

class GraphParity : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

// Eager outputs of A and B first; then the graph captured on A replays B, A, B — with
// eager forwards (which reuse freed blocks) between the replays.
TEST_P(GraphParity, ReplayEqualsEagerBitForBitAndRereadsInputs) {
  const auto& [name, dtype] = GetParam();
  CaseModel c = load_case(name, dtype);
  DiTModel& model = *c.loaded.model;
  const TensorMap a = c.inputs, b = other_inputs(c.inputs, 11);
  const Tensor eager_a = model.forward(a).at("sample"), eager_b = model.forward(b).at("sample");
  ASSERT_FALSE(bytes_of(eager_a) == bytes_of(eager_b)) << "inputs A and B must give different outputs";

  CapturedForward graph(model);
  expect_same_bits(graph.forward(a).at("sample"), eager_a, "first call (eager warm-up, then capture)");
  EXPECT_EQ(graph.graph_count(), 1u);
  expect_same_bits(graph.forward(b).at("sample"), eager_b, "replay on B");
  const Tensor eager_between = model.forward(b).at("sample");
  expect_same_bits(graph.forward(a).at("sample"), eager_a, "replay on A after an eager forward");
  expect_same_bits(eager_between, eager_b, "eager output held across a replay");
  // The timestep may come from the host: it is copied into the graph's device buffer.
  TensorMap b_host_timestep = b;
  b_host_timestep["timestep"] = b.at("timestep").to(Device::cpu());
  expect_same_bits(graph.forward(b_host_timestep).at("sample"), eager_b, "replay with a host timestep");
  EXPECT_EQ(graph.graph_count(), 1u) << "one signature, one graph";
}

INSTANTIATE_TEST_SUITE_P(Cases, GraphParity,
                         ::testing::Combine(::testing::Values("wan/t2v", "wan/ti2v_per_token", "wan/i2v", "sd3/sd3",
                                                              "flux/dev", "flux/schnell_batch2"),
                                            ::testing::Values(DType::BFloat16, DType::Float32)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" + dtype_name(std::get<1>(info.param));
                           for (char& ch : name)
                             if (ch == '/') ch = '_';
                           return name;
                         });

TEST(CapturedForward, NewSignatureCapturesAnotherGraph) {
  CaseModel c = load_case("wan/t2v", DType::BFloat16);
  DiTModel& model = *c.loaded.model;
  TensorMap batch2 = c.inputs;
  for (auto& [name, tensor] : batch2) {
    const std::array<Tensor, 2> both{tensor, tensor};
    tensor = ops::concat(both, 0);
  }
  const Tensor eager_1 = model.forward(c.inputs).at("sample"), eager_2 = model.forward(batch2).at("sample");
  CapturedForward graph(model);
  graph.forward(c.inputs);
  graph.forward(batch2);
  EXPECT_EQ(graph.graph_count(), 2u);
  expect_same_bits(graph.forward(c.inputs).at("sample"), eager_1, "batch 1 replay");
  expect_same_bits(graph.forward(batch2).at("sample"), eager_2, "batch 2 replay");
}

// Flux's ids pick its rotary table on the host: other id values are another signature (a
// replay never reads a table built for other positions), the same values replay.
TEST(CapturedForward, FluxIdValuesPickTheirOwnGraph) {
  CaseModel c = load_case("flux/dev", DType::BFloat16);
  DiTModel& model = *c.loaded.model;
  TensorMap moved = c.inputs;
  moved["img_ids"] = ops::scale(c.inputs.at("img_ids"), 2.0f);
  const Tensor eager = model.forward(c.inputs).at("sample"), eager_moved = model.forward(moved).at("sample");
  ASSERT_FALSE(bytes_of(eager) == bytes_of(eager_moved));
  CapturedForward graph(model);
  graph.forward(c.inputs);
  graph.forward(moved);
  EXPECT_EQ(graph.graph_count(), 2u);
  expect_same_bits(graph.forward(c.inputs).at("sample"), eager, "the pipeline's ids");
  expect_same_bits(graph.forward(moved).at("sample"), eager_moved, "ids scaled by 2");
  EXPECT_EQ(graph.graph_count(), 2u);
}

// A hook reads module outputs on the host mid-forward: refused before anything is captured.
TEST(CapturedForward, ForwardHookIsRefused) {
  struct Hook : nn::ForwardHook {
    void on_output(const nn::Module&, std::string_view, const Tensor&) override {}
  };
  CaseModel c = load_case("wan/t2v", DType::BFloat16);
  c.loaded.model->find_module("blocks.0")->add_forward_hook(std::make_shared<Hook>());
  CapturedForward graph(*c.loaded.model);
  try {
    graph.forward(c.inputs);
    FAIL() << "a model with a forward hook was captured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("module 'blocks.0' has a forward hook"), std::string::npos) << e.what();
  }
}

// A host read inside the captured code fails naming it; the device works on afterwards.
TEST(DeviceGraph, HostCopyDuringCaptureIsNamedAndTheDeviceRecovers) {
  const Tensor x = testing::random_tensor({64}, 1).to(kGpu);
  try {
    DeviceGraph::capture(kGpu, [&] { ops::add(x, x).to(Device::cpu()); });
    FAIL() << "a device-to-host copy was captured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device-to-host copy of 256 bytes during a CUDA graph capture"),
              std::string::npos)
        << e.what();
  }
  try {
    DeviceGraph::capture(kGpu, [&] { synchronize(kGpu); });
    FAIL() << "a synchronize was captured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("synchronize(cuda:0) during a CUDA graph capture"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(cuda::is_capturing(0));
  EXPECT_EQ(testing::max_abs_diff(ops::add(x, x), ops::scale(x, 2.0f)), 0.0);
}

// A tensor made before the capture and dropped inside it is still read by every replay:
// its block must not be handed out again while the graph lives.
TEST(DeviceGraph, BlockFreedDuringCaptureStaysUntouched) {
  const Tensor values = testing::random_tensor({1024}, 2);
  Tensor x = values.to(kGpu);
  const Tensor one = Tensor::scalar(1.0f).to(kGpu);
  ops::add(x, one);  // kernels launch once before their capture (the driver loads them lazily)
  Tensor y;
  const DeviceGraph graph = DeviceGraph::capture(kGpu, [&] {
    y = ops::add(x, one);
    x = Tensor();
  });
  Tensor same_size = Tensor::empty({1024}, DType::Float32, kGpu);
  same_size.copy_(Tensor::from_vector(std::vector<float>(1024, 7.0f), {1024}));
  graph.replay();
  EXPECT_EQ(testing::max_abs_diff(y.to(Device::cpu()), ops::add(values, Tensor::scalar(1.0f))), 0.0);
  EXPECT_EQ(testing::max_abs_diff(same_size.to(Device::cpu()), Tensor::from_vector(std::vector<float>(1024, 7.0f), {1024})),
            0.0);
}

// Blocks of a graph's pool go back to the shared free lists when the graph goes: a second
// capture of the same work then needs no new memory.
TEST(DeviceGraph, ReleasedPoolIsReused) {
  const Tensor x = testing::random_tensor({1 << 20}, 3).to(kGpu);
  const auto work = [&] { ops::add(ops::add(x, x), x); };
  work();
  const auto capture = [&] { return DeviceGraph::capture(kGpu, work); };
  { const DeviceGraph first = capture(); }
  const size_t reserved = cuda::cuda_memory_stats(0).reserved_bytes;
  { const DeviceGraph second = capture(); }
  EXPECT_EQ(cuda::cuda_memory_stats(0).reserved_bytes, reserved);
}

// The parity case's tiny Wan is all launches: the replay must beat the eager forward.
// The denoising loop of a two-expert case (Wan2.2 A14B's layout, tiny) with guidance, both
// CFG batchings: graphs captured per expert and replayed end at the eager loop's latents bit
// for bit, across the switch from the first expert's graph to the second's.
TEST(CapturedForward, DenoiseLoopAcrossTwoExpertsEqualsEager) {
  const std::filesystem::path dir = testing::source_path("tests/fixtures/pipeline/wan22_a14b_tiny");
  const sampling::PipelineFolder folder = sampling::read_pipeline_folder(dir);
  LoadOptions options;
  options.device = kGpu;
  options.dtype = DType::Float32;
  const LoadedTransformer first = load_transformer(folder.transformer, options);
  const LoadedTransformer second = load_transformer(*folder.transformer_2, options);
  const auto fixture = [&](const std::string& file, const std::string& name) {
    return SafetensorsFile::open(dir / file).tensor(name).to(kGpu);
  };
  for (auto batching : {sampling::CfgBatching::Batched, sampling::CfgBatching::Sequential}) {
    sampling::DenoiseRequest request;
    request.expert = {first.model.get(), 4.0};
    request.expert_2 = sampling::Expert{second.model.get(), 3.0};
    request.boundary_ratio = folder.settings.boundary_ratio;
    request.steps = 6;
    request.latents = fixture("noise.safetensors", "latents");
    request.prompt_embeds = fixture("prompt_embeds.safetensors", "prompt_embeds");
    request.negative_prompt_embeds = fixture("negative_prompt_embeds.safetensors", "negative_prompt_embeds");
    request.cfg_batching = batching;
    const auto run = [&](bool graphs) {
      request.cuda_graph = graphs;
      int second_expert_steps = 0;
      const Tensor latents =
          sampling::denoise(*sampling::load_scheduler(*folder.scheduler_config), request,
                            {{}, [&](const sampling::StepEvent& e) { second_expert_steps += e.second_expert; }});
      EXPECT_EQ(second_expert_steps, 2);
      return latents;
    };
    const Tensor eager = run(false);
    expect_same_bits(run(true), eager,
                     batching == sampling::CfgBatching::Batched ? "denoise, batched CFG" : "denoise, sequential CFG");
  }
}

TEST(CapturedForward, SmallShapeTiming) {
  CaseModel c = load_case("wan/t2v", DType::BFloat16);
  DiTModel& model = *c.loaded.model;
  CapturedForward graph(model);
  graph.forward(c.inputs);
  const double eager_ms = testing::milliseconds_per_call([&] { model.forward(c.inputs); }, 50);
  const double graph_ms = testing::milliseconds_per_call([&] { graph.forward(c.inputs); }, 50);
  std::printf("wan/t2v bf16 forward: eager %.3f ms, CUDA graph replay %.3f ms (%.1fx)\n", eager_ms, graph_ms,
              eager_ms / graph_ms);
  EXPECT_LT(graph_ms, eager_ms);
}

TEST(CudaGraph, TwoHeadsAndArgumentsReplayAsTheEagerForward) {
  // Both output heads come out of the replay; the non-tensor arguments belong to the
  // signature (the forward reads them on the host), so other values capture another graph.
  testing::register_two_head_model();
  const std::filesystem::path dir = testing::temp_dir("two_head_graph");
  testing::write_two_head_case(dir, 11);
  LoadOptions options;
  options.device = kGpu;
  LoadedTransformer loaded = load_transformer(dir / "transformer", options);
  const TensorMap inputs = read_model_inputs(dir / "inputs.safetensors", *loaded.model, kGpu);
  const ArgMap args = read_args_file(dir / "args.json", loaded.model->io());
  CapturedForward graph(*loaded.model);
  graph.forward(inputs, args);  // eager warm-up and capture
  const TensorMap replayed = graph.forward(inputs, args);
  const TensorMap eager = loaded.model->forward(inputs, args);
  for (const char* head : {"sample", "audio_sample"}) expect_same_bits(replayed.at(head), eager.at(head), head);
  EXPECT_EQ(graph.graph_count(), 1u);
  ArgMap other = args;
  other["scale"] = 2.0;
  const TensorMap doubled = graph.forward(inputs, other);
  EXPECT_EQ(graph.graph_count(), 2u);
  expect_same_bits(doubled.at("sample"), loaded.model->forward(inputs, other).at("sample"), "scale 2");
}

}  // namespace
}  // namespace fastdit
