#include "sampling/denoise.h"

#include <array>
#include <memory>

#include "core/error.h"
#include "models/captured_forward.h"
#include "ops/ops.h"

namespace fastdit::sampling {

namespace {

void check_roles(const DiTModel& model) {
  const ModelIO io = model.io();
  for (InputRole role : {InputRole::Latents, InputRole::Timestep, InputRole::TextEmbeddings})
    FASTDIT_CHECK(!io.name_of(role).empty(), "denoise: ", model.type_name(),
                  " declares no latents, timestep or text-embeddings input");
  FASTDIT_CHECK(!io.outputs.empty(), "denoise: ", model.type_name(), " declares no output head");
}

void check_request(const DenoiseRequest& r) {
  FASTDIT_CHECK(r.expert.model, "denoise: no model");
  check_roles(*r.expert.model);
  if (r.expert_2 && r.expert_2->model) check_roles(*r.expert_2->model);
  FASTDIT_CHECK(!r.boundary_ratio || (r.expert_2 && r.expert_2->model),
                "denoise: boundary_ratio is set but there is no transformer_2 to take the low-noise steps");
  FASTDIT_CHECK(r.latents.defined() && r.latents.dim() >= 3, "denoise: latents must be [B, ...] of rank 3 or more",
                r.latents.defined() ? ", got " + r.latents.str() : std::string());
  FASTDIT_CHECK(r.timestep_divisor > 0, "denoise: timestep_divisor must be positive");
  FASTDIT_CHECK(r.sigmas.empty() || static_cast<int64_t>(r.sigmas.size()) == r.steps, "denoise: ", r.sigmas.size(),
                " sigmas for ", r.steps, " steps");
  const int64_t batch = r.latents.size(0);
  const auto check_embeds = [&](const Tensor& embeds, const char* name) {
    FASTDIT_CHECK(embeds.defined() && embeds.dim() == 3 && embeds.size(0) == batch, "denoise: ", name, " must be [",
                  batch, ", L, D]", embeds.defined() ? ", got " + embeds.str() : std::string());
  };
  check_embeds(r.prompt_embeds, "prompt embeddings");
  FASTDIT_CHECK(!r.cfg_parallel || uses_guidance(r), "denoise: CFG-parallel needs classifier-free guidance (guidance "
                "scale > 1), got ", r.expert.guidance_scale);
  FASTDIT_CHECK(!r.cfg_parallel || r.cfg_parallel->world_size() == 2, "denoise: CFG-parallel runs on a group of 2 "
                "ranks (cond, uncond), got ", r.cfg_parallel ? r.cfg_parallel->world_size() : 0);
  if (!uses_guidance(r)) return;
  check_embeds(r.negative_prompt_embeds, "negative prompt embeddings (guidance scale > 1)");
  FASTDIT_CHECK(r.conditioning.empty(),
                "denoise: classifier-free guidance with conditioning inputs besides the text is not supported");
  FASTDIT_CHECK(r.negative_prompt_embeds.size(2) == r.prompt_embeds.size(2),
                "denoise: prompt and negative prompt embeddings differ in width: ", r.prompt_embeds.str(), " vs ",
                r.negative_prompt_embeds.str());
}

// The experts' forwards, eager or through the current expert's captured graph; the timestep
// reaches a graph through its device buffer like every other input. Experts take over once
// each, in timestep order, so a new expert's graph replaces the last one's (and frees its
// memory pool) rather than joining it.
class Forwards {
 public:
  Forwards(bool cuda_graph, const TensorMap& conditioning, float timestep_divisor)
      : cuda_graph_(cuda_graph), conditioning_(conditioning), timestep_divisor_(timestep_divisor) {}

  // The model's inputs by the roles it declares; its first output head is the prediction.
  Tensor operator()(DiTModel& model, const Tensor& latents, float t, const Tensor& text) {
    const ModelIO io = model.io();
    const int64_t batch = latents.size(0);
    const float model_t = t / timestep_divisor_;
    const Tensor timestep = Tensor::from_vector(std::vector<float>(static_cast<size_t>(batch), model_t), {batch});
    TensorMap inputs = conditioning_;
    inputs[io.name_of(InputRole::Latents)] = latents;
    inputs[io.name_of(InputRole::Timestep)] = timestep.to(latents.device());
    inputs[io.name_of(InputRole::TextEmbeddings)] = text;
    if (!cuda_graph_) return model.forward(inputs).at(io.outputs.front());
    if (graph_model_ != &model) {
      graph_.reset();
      graph_ = std::make_unique<CapturedForward>(model);
      graph_model_ = &model;
    }
    return graph_->forward(inputs).at(io.outputs.front());
  }

 private:
  bool cuda_graph_;
  const TensorMap& conditioning_;
  float timestep_divisor_;
  const DiTModel* graph_model_ = nullptr;
  std::unique_ptr<CapturedForward> graph_;
};

// The expert's flow prediction at timestep t, guided when the request asks for guidance.
Tensor prediction(Forwards& forward, const Expert& expert, const Tensor& latents, float t, const DenoiseRequest& r) {
  if (!uses_guidance(r)) return forward(*expert.model, latents, t, r.prompt_embeds);
  Tensor cond, uncond;
  if (r.cfg_parallel) {
    // This rank's half, then both halves on both ranks: [2, B, ...] = (cond, uncond).
    distributed::Communicator& pair = *r.cfg_parallel;
    const Tensor& text = pair.rank() == 0 ? r.prompt_embeds : r.negative_prompt_embeds;
    const Tensor mine = forward(*expert.model, latents, t, text).contiguous();
    Shape both = mine.shape();
    both.insert(both.begin(), 2);
    Tensor gathered = Tensor::empty(both, mine.dtype(), mine.device());
    pair.all_gather(std::span<const Tensor>(&mine, 1), std::span<Tensor>(&gathered, 1));
    cond = gathered.narrow(0, 0, 1).reshape(mine.shape());
    uncond = gathered.narrow(0, 1, 1).reshape(mine.shape());
    const auto scale = static_cast<float>(expert.guidance_scale);
    return ops::add(uncond, ops::scale(ops::sub(cond, uncond), scale));
  }
  const bool batched =
      r.cfg_batching == CfgBatching::Batched && r.prompt_embeds.shape() == r.negative_prompt_embeds.shape();
  if (batched) {
    const std::array<Tensor, 2> both_latents{latents, latents};
    const std::array<Tensor, 2> both_texts{r.prompt_embeds, r.negative_prompt_embeds};
    const Tensor out = forward(*expert.model, ops::concat(both_latents, 0), t, ops::concat(both_texts, 0));
    const int64_t batch = latents.size(0);
    cond = out.narrow(0, 0, batch);
    uncond = out.narrow(0, batch, batch);
  } else {
    cond = forward(*expert.model, latents, t, r.prompt_embeds);
    uncond = forward(*expert.model, latents, t, r.negative_prompt_embeds);
  }
  const auto scale = static_cast<float>(expert.guidance_scale);
  return ops::add(uncond, ops::scale(ops::sub(cond, uncond), scale));
}

}  // namespace

bool uses_guidance(const DenoiseRequest& request) { return request.expert.guidance_scale > 1.0; }

Tensor denoise(Scheduler& scheduler, const DenoiseRequest& request, const DenoiseCallbacks& callbacks) {
  check_request(request);
  if (request.sigmas.empty()) {
    scheduler.set_timesteps(request.steps, request.mu);
  } else {
    scheduler.set_sigmas(request.sigmas, request.mu);
  }
  // WanPipeline compares the scheduler's timestep (float32 or int64) with a Python float.
  const std::optional<float> boundary =
      request.boundary_ratio ? std::optional<float>(static_cast<float>(
                                   *request.boundary_ratio * static_cast<double>(scheduler.num_train_timesteps())))
                             : std::nullopt;
  Tensor latents = request.latents;
  Forwards forward(request.cuda_graph, request.conditioning, request.timestep_divisor);
  for (int64_t i = 0; i < scheduler.num_steps(); ++i) {
    const float t = scheduler.timesteps()[static_cast<size_t>(i)];
    const StepEvent event{i, scheduler.num_steps(), t, boundary && t < *boundary};
    if (callbacks.before_step) callbacks.before_step(event);
    const Expert& expert = event.second_expert ? *request.expert_2 : request.expert;
    latents = scheduler.step(prediction(forward, expert, latents, t, request), latents);
    if (callbacks.after_step) callbacks.after_step(event);
  }
  return latents;
}

}  // namespace fastdit::sampling
