// The C API (include/fastdit.h) over the engine: every entry point runs its body inside
// `guarded`, which turns every exception into a status and this thread's message.
#include "fastdit.h"

#include <chrono>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "capi/dlpack_tensors.h"
#include "loader/safetensors.h"
#include "loader/transformer_loader.h"

struct fastdit_model {
  fastdit::LoadedTransformer loaded;
  fastdit::ModelIO io;
  fastdit::Device device;
  std::string class_name, dir, device_name, dtype_name;
  std::vector<fastdit_input_info> inputs;
  std::vector<fastdit_arg_info> args;
  std::vector<std::string> arg_defaults;  // default_json of args[i]
};

struct fastdit_safetensors {
  fastdit::SafetensorsFile file;
};

namespace fastdit::capi {
namespace {

thread_local std::string t_last_error;

// Loads, forwards and frees share the engine's process-wide device state (streams,
// caches, the attention backend), so they run one at a time.
std::mutex g_model_mutex;

std::mutex g_log_mutex;
fastdit_log_fn g_log = nullptr;
void* g_log_user = nullptr;

void log(fastdit_log_level level, const std::string& message) {
  std::lock_guard lock(g_log_mutex);
  if (g_log) g_log(level, message.c_str(), g_log_user);
}

template <class Body>
fastdit_status guarded(Body&& body) {
  try {
    body();
    return FASTDIT_OK;
  } catch (const InvalidArgument& e) {
    t_last_error = e.what();
    return FASTDIT_ERROR_INVALID_ARGUMENT;
  } catch (const Error& e) {
    t_last_error = e.what();
    return FASTDIT_ERROR_ENGINE;
  } catch (const std::bad_alloc&) {
    t_last_error = "out of host memory";
    return FASTDIT_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    t_last_error = std::string("internal error: ") + e.what();
    return FASTDIT_ERROR_INTERNAL;
  } catch (...) {
    t_last_error = "internal error: an unknown exception";
    return FASTDIT_ERROR_INTERNAL;
  }
}

template <class T>
T* require(T* pointer, const char* what) {
  if (!pointer) throw InvalidArgument(std::string(what) + " is null");
  return pointer;
}

// An option struct from a caller built against this header or an older one: the fields
// it has, defaults for the rest.
template <class Options>
Options read_options(const Options* given, void (*init)(Options*), const char* what) {
  Options options;
  init(&options);
  if (!given) return options;
  if (given->struct_size < sizeof(size_t) || given->struct_size > sizeof(Options))
    throw InvalidArgument(std::string(what) + ".struct_size " + std::to_string(given->struct_size) +
                          " is not the size of a fastdit_" + what + " (call fastdit_" + what + "_init)");
  std::memcpy(static_cast<void*>(&options), given, given->struct_size);
  return options;
}

// The engine chooses the attention backend per call from FASTDIT_ATTENTION_BACKEND.
void set_attention_backend(const char* name, const Device& device) {
  if (!name || !*name) return;
  const std::string backend(name);
  if (backend != "cudnn" && backend != "flash" && backend != "reference")
    throw InvalidArgument("attention_backend '" + backend + "' is not one of cudnn, flash, reference");
  if (!device.is_cuda())
    throw InvalidArgument("attention_backend '" + backend + "' applies to CUDA models; the device is " + device.str());
  const char* current = std::getenv("FASTDIT_ATTENTION_BACKEND");
  FASTDIT_CHECK(!current || !*current || backend == current, "attention_backend '", backend,
                "': the attention backend is process-wide and FASTDIT_ATTENTION_BACKEND is already '", current, "'");
  setenv("FASTDIT_ATTENTION_BACKEND", name, 1);
}

void describe_io(fastdit_model& m) {
  for (const auto& spec : m.io.tensors) {
    m.inputs.push_back({spec.name.c_str(), spec.required, static_cast<int32_t>(spec.kind), 0,
                        static_cast<int32_t>(spec.ranks.size()), spec.ranks.data()});
    switch (spec.role) {
      case InputRole::Latents: m.inputs.back().role = FASTDIT_ROLE_LATENTS; break;
      case InputRole::Timestep: m.inputs.back().role = FASTDIT_ROLE_TIMESTEP; break;
      case InputRole::TextEmbeddings: m.inputs.back().role = FASTDIT_ROLE_TEXT_EMBEDDINGS; break;
      case InputRole::Other: m.inputs.back().role = FASTDIT_ROLE_OTHER; break;
    }
  }
  m.arg_defaults.reserve(m.io.args.size());  // args[i].default_json points into it
  for (const auto& spec : m.io.args) {
    m.arg_defaults.push_back(spec.default_value ? arg_value_str(*spec.default_value) : "");
    m.args.push_back({spec.name.c_str(), static_cast<int32_t>(spec.type), spec.required,
                      spec.default_value ? m.arg_defaults.back().c_str() : nullptr});
  }
}

std::unique_ptr<fastdit_model> load(const char* path, const fastdit_load_options& options) {
  LoadOptions load_options;
  load_options.device = Device::parse(options.device ? options.device : "cpu");
  load_options.dtype = parse_run_dtype(options.dtype ? options.dtype : "float32", "dtype");
  if (options.fuse_projections < -1 || options.fuse_projections > 1)
    throw InvalidArgument("fuse_projections " + std::to_string(options.fuse_projections) +
                          ": expected -1 (auto), 0 (off) or 1 (on)");
  if (options.fuse_projections >= 0) load_options.fuse_projections = options.fuse_projections == 1;
  load_options.precision = parse_precision(options.precision ? options.precision : "bf16", "precision");
  check_precision(load_options, "precision");
  set_attention_backend(options.attention_backend, load_options.device);
  if (options.progress) {
    load_options.on_weights = [&options](size_t done, size_t total) {
      options.progress("loading weights", static_cast<int64_t>(done), static_cast<int64_t>(total),
                       options.progress_user_data);
    };
  }
  const auto start = std::chrono::steady_clock::now();
  auto m = std::make_unique<fastdit_model>();
  m->loaded = load_transformer(path, load_options);
  const DiTModel& model = *m->loaded.model;
  m->io = model.io();
  // Every head a forward may return: the declared ones, then those only some calls return
  // (an argument asks for them), so that a caller sizes its outputs once.
  m->io.outputs.insert(m->io.outputs.end(), m->io.optional_outputs.begin(), m->io.optional_outputs.end());
  m->device = load_options.device;
  m->class_name = model.type_name();
  m->dir = m->loaded.dir.string();
  m->device_name = m->device.str();
  m->dtype_name = dtype_name(load_options.dtype);
  describe_io(*m);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log(FASTDIT_LOG_INFO, detail::concat("loaded ", m->class_name, " from ", m->dir, " on ", m->device_name, " as ",
                                       m->dtype_name, " in ", seconds, " s"));
  return m;
}

ArgValue value_of(const fastdit_value_arg& arg) {
  const std::string what = std::string("argument '") + arg.name + "'";
  const auto list = [&](const auto* values) {
    if (arg.list_length < 0 || (arg.list_length > 0 && !values))
      throw InvalidArgument(what + ": list of " + std::to_string(arg.list_length) + " values without values");
    using T = std::remove_cvref_t<decltype(*values)>;
    return std::vector<T>(values, values + arg.list_length);
  };
  switch (arg.type) {
    case FASTDIT_ARG_BOOL: return arg.int_value != 0;
    case FASTDIT_ARG_INT: return arg.int_value;
    case FASTDIT_ARG_FLOAT: return arg.float_value;
    case FASTDIT_ARG_INT_LIST: return list(arg.int_list);
    case FASTDIT_ARG_FLOAT_LIST: return list(arg.float_list);
    default: throw InvalidArgument(what + ": unknown fastdit_arg_type " + std::to_string(arg.type));
  }
}

// Makes the caller's stream wait for the model's device when the forward leaves, however
// it leaves: work queued before a failure may still read the caller's inputs.
class StreamHandback {
 public:
  StreamHandback(Device device, void* stream) : device_(device), stream_(stream) {}
  ~StreamHandback() {
    try {
      stream_wait_device(device_, stream_);
    } catch (...) {
    }
  }
  StreamHandback(const StreamHandback&) = delete;
  StreamHandback& operator=(const StreamHandback&) = delete;

 private:
  Device device_;
  void* stream_;
};

std::vector<fastdit_tensor_out> forward(fastdit_model& m, const fastdit_tensor_arg* inputs, int64_t num_inputs,
                                        const fastdit_value_arg* values, int64_t num_values,
                                        const fastdit_forward_options& options) {
  if (num_inputs < 0 || num_values < 0) throw InvalidArgument("negative input or argument count");
  if (num_inputs > 0) require(inputs, "inputs");
  if (num_values > 0) require(values, "args");
  std::vector<std::pair<std::string, Tensor>> views;
  std::set<std::string> names;
  for (int64_t i = 0; i < num_inputs; ++i) {
    const std::string name = require(inputs[i].name, "an input's name");
    const std::string what = "input '" + name + "'";
    if (!names.insert(name).second) throw InvalidArgument(what + " given twice");
    Tensor view = view_of(*require(inputs[i].tensor, (what + "'s tensor").c_str()), what);
    FASTDIT_CHECK(view.device().is_cpu() || view.device() == m.device, m.class_name, ": ", what, " is on ",
                  view.device().str(), " but the model is on ", m.device_name);
    views.emplace_back(name, std::move(view));
  }
  ArgMap args;
  for (int64_t i = 0; i < num_values; ++i) {
    const std::string name = require(values[i].name, "an argument's name");
    if (!names.insert(name).second) throw InvalidArgument("argument '" + name + "' given twice");
    args[name] = value_of(values[i]);
  }
  const bool on_device = m.device.is_cuda();
  if (on_device) device_wait_stream(m.device, options.cuda_stream);
  StreamHandback handback(on_device ? m.device : Device::cpu(), options.cuda_stream);
  TensorMap tensors;
  for (auto& [name, view] : views) tensors[name] = view.to(m.device).contiguous();
  const TensorMap heads = m.loaded.model->forward(tensors, args);

  std::vector<std::unique_ptr<DLManagedTensor, void (*)(DLManagedTensor*)>> handed;
  std::vector<const std::string*> returned;
  for (const auto& name : m.io.outputs) {
    const auto found = heads.find(name);
    if (found == heads.end()) continue;  // an optional head this call did not ask for
    returned.push_back(&name);
    Tensor head = found->second;
    if (options.outputs_float32) head = head.to(DType::Float32);
    if (options.outputs_on_host) head = head.to(Device::cpu());
    handed.emplace_back(hand_out(std::move(head), options.cuda_stream),
                        [](DLManagedTensor* t) { t->deleter(t); });
  }
  std::vector<fastdit_tensor_out> out;
  for (size_t i = 0; i < handed.size(); ++i) out.push_back({returned[i]->c_str(), handed[i].release()});
  return out;
}

}  // namespace
}  // namespace fastdit::capi

using namespace fastdit;
using namespace fastdit::capi;

extern "C" {

int32_t fastdit_api_version(void) { return FASTDIT_API_VERSION; }

const char* fastdit_last_error(void) { return t_last_error.c_str(); }

void fastdit_set_log_callback(fastdit_log_fn callback, void* user_data) {
  std::lock_guard lock(g_log_mutex);
  g_log = callback;
  g_log_user = user_data;
}

void fastdit_load_options_init(fastdit_load_options* options) {
  if (options) *options = {sizeof(fastdit_load_options), nullptr, nullptr, -1, nullptr, nullptr, nullptr, nullptr};
}

void fastdit_forward_options_init(fastdit_forward_options* options) {
  if (options) *options = {sizeof(fastdit_forward_options), nullptr, 0, 0};
}

fastdit_status fastdit_model_load(const char* path, const fastdit_load_options* options, fastdit_model** model) {
  return guarded([&] {
    require(model, "model");
    *model = nullptr;
    const fastdit_load_options read = read_options(options, fastdit_load_options_init, "load_options");
    std::lock_guard lock(g_model_mutex);
    *model = load(require(path, "path"), read).release();
  });
}

void fastdit_model_free(fastdit_model* model) {
  std::lock_guard lock(g_model_mutex);
  delete model;
}

const char* fastdit_model_class_name(const fastdit_model* model) { return model ? model->class_name.c_str() : ""; }
const char* fastdit_model_dir(const fastdit_model* model) { return model ? model->dir.c_str() : ""; }
const char* fastdit_model_device(const fastdit_model* model) { return model ? model->device_name.c_str() : ""; }
const char* fastdit_model_dtype(const fastdit_model* model) { return model ? model->dtype_name.c_str() : ""; }

int64_t fastdit_model_num_inputs(const fastdit_model* model) {
  return model ? static_cast<int64_t>(model->inputs.size()) : 0;
}

fastdit_status fastdit_model_input(const fastdit_model* model, int64_t index, fastdit_input_info* info) {
  return guarded([&] {
    require(model, "model");
    if (index < 0 || index >= static_cast<int64_t>(model->inputs.size()))
      throw InvalidArgument("input index " + std::to_string(index) + " out of range");
    *require(info, "info") = model->inputs[index];
  });
}

int64_t fastdit_model_num_args(const fastdit_model* model) { return model ? static_cast<int64_t>(model->args.size()) : 0; }

fastdit_status fastdit_model_arg(const fastdit_model* model, int64_t index, fastdit_arg_info* info) {
  return guarded([&] {
    require(model, "model");
    if (index < 0 || index >= static_cast<int64_t>(model->args.size()))
      throw InvalidArgument("argument index " + std::to_string(index) + " out of range");
    *require(info, "info") = model->args[index];
  });
}

int64_t fastdit_model_num_outputs(const fastdit_model* model) {
  return model ? static_cast<int64_t>(model->io.outputs.size()) : 0;
}

int32_t fastdit_ignored_argument(const char* name) { return name && is_ignored_reference_arg(name) ? 1 : 0; }

const char* fastdit_model_output_name(const fastdit_model* model, int64_t index) {
  if (!model || index < 0 || index >= static_cast<int64_t>(model->io.outputs.size())) return nullptr;
  return model->io.outputs[index].c_str();
}

fastdit_status fastdit_model_forward(fastdit_model* model, const fastdit_tensor_arg* inputs, int64_t num_inputs,
                                     const fastdit_value_arg* args, int64_t num_args,
                                     const fastdit_forward_options* options, fastdit_tensor_out* outputs,
                                     int64_t capacity, int64_t* num_outputs) {
  return guarded([&] {
    require(model, "model");
    require(outputs, "outputs");
    require(num_outputs, "num_outputs");
    *num_outputs = 0;
    if (capacity < static_cast<int64_t>(model->io.outputs.size()))
      throw InvalidArgument("outputs has room for " + std::to_string(capacity) + " heads; the model returns " +
                            std::to_string(model->io.outputs.size()));
    const fastdit_forward_options read = read_options(options, fastdit_forward_options_init, "forward_options");
    std::lock_guard lock(g_model_mutex);
    const auto heads = forward(*model, inputs, num_inputs, args, num_args, read);
    std::copy(heads.begin(), heads.end(), outputs);
    *num_outputs = static_cast<int64_t>(heads.size());
  });
}

fastdit_status fastdit_safetensors_open(const char* path, fastdit_safetensors** file) {
  return guarded([&] {
    require(file, "file");
    *file = nullptr;
    *file = new fastdit_safetensors{SafetensorsFile::open(require(path, "path"))};
  });
}

void fastdit_safetensors_close(fastdit_safetensors* file) { delete file; }

int64_t fastdit_safetensors_count(const fastdit_safetensors* file) {
  return file ? static_cast<int64_t>(file->file.names().size()) : 0;
}

fastdit_status fastdit_safetensors_get(const fastdit_safetensors* file, int64_t index, int32_t widen_to_float32,
                                       const char** name, DLManagedTensor** tensor) {
  return guarded([&] {
    require(file, "file");
    require(name, "name");
    require(tensor, "tensor");
    const auto& names = file->file.names();
    if (index < 0 || index >= static_cast<int64_t>(names.size()))
      throw InvalidArgument("tensor index " + std::to_string(index) + " out of range for " + file->file.label());
    Tensor t = file->file.tensor(names[index]);
    const bool narrow_float = t.dtype() == DType::BFloat16 || t.dtype() == DType::Float8E4M3 ||
                              t.dtype() == DType::Float8E5M2;
    if (widen_to_float32 && narrow_float) t = t.to(DType::Float32);
    *tensor = hand_out(std::move(t), nullptr);
    *name = names[index].c_str();
  });
}

fastdit_status fastdit_safetensors_write(const char* path, const fastdit_tensor_arg* tensors, int64_t num_tensors,
                                         const char* const* metadata_keys, const char* const* metadata_values,
                                         int64_t num_metadata) {
  return guarded([&] {
    require(path, "path");
    if (num_tensors < 0 || num_metadata < 0) throw InvalidArgument("negative tensor or metadata count");
    if (num_tensors > 0) require(tensors, "tensors");
    NamedTensors named;
    for (int64_t i = 0; i < num_tensors; ++i) {
      const std::string name = require(tensors[i].name, "a tensor's name");
      Tensor view = view_of(*require(tensors[i].tensor, "a tensor"), "tensor '" + name + "'");
      if (!view.device().is_cpu())
        throw InvalidArgument("tensor '" + name + "' is on " + view.device().str() + ": write host tensors");
      named.emplace_back(name, std::move(view));
    }
    SafetensorsMetadata metadata;
    for (int64_t i = 0; i < num_metadata; ++i)
      metadata[require(require(metadata_keys, "metadata_keys")[i], "a metadata key")] =
          require(require(metadata_values, "metadata_values")[i], "a metadata value");
    write_safetensors(path, named, metadata);
  });
}

}  // extern "C"
