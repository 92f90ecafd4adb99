#include "loader/transformer_loader.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <unordered_map>

#include "core/checked_math.h"
#include "core/device_memory.h"
#include "ops/ops.h"

namespace fastdit {

namespace fs = std::filesystem;

fs::path resolve_transformer_dir(const fs::path& path) {
  FASTDIT_CHECK(fs::exists(path), path.string(), ": no such file or directory");
  FASTDIT_CHECK(fs::is_directory(path), path.string(), ": expected a model directory");
  if (fs::exists(path / "config.json")) return path;
  if (fs::exists(path / "transformer" / "config.json")) return path / "transformer";
  // LongCat-Video's repository keeps its DiT under dit/.
  if (fs::exists(path / "dit" / "config.json")) return path / "dit";
  FASTDIT_FAIL(path.string(), ": neither config.json nor transformer/config.json (nor dit/config.json) found");
}

std::unique_ptr<DiTModel> build_transformer(const fs::path& path, const BuildOptions& options) {
  const fs::path config_path =
      fs::exists(path) && !fs::is_directory(path) ? path  // a FIFO or device is refused by the reader
                                                  : resolve_transformer_dir(path) / "config.json";
  ConfigReader config = ConfigReader::from_file(config_path.string());
  return create_dit(config, options);
}

namespace {

struct PendingPiece {
  std::string checkpoint_name;
  MappedPiece piece;
};

using TensorIndex = std::unordered_map<std::string, const CheckpointTensor*>;

std::string in_file(const CheckpointTensor& tensor) { return tensor.file.empty() ? "" : " (" + tensor.file + ")"; }

// Equal once their size-1 dims are dropped ([F, 1] and [F]).
bool same_but_unit_dims(const Shape& a, const Shape& b) {
  const auto squeezed = [](const Shape& s) {
    Shape out;
    for (int64_t d : s)
      if (d != 1) out.push_back(d);
    return out;
  };
  return squeezed(a) == squeezed(b);
}

// Orders the pieces of one parameter and checks they tile it exactly.
std::vector<PieceRecord> plan_parameter(const std::string& name, const nn::Parameter& param,
                                        std::vector<PendingPiece> pieces, const TensorIndex& tensors) {
  std::sort(pieces.begin(), pieces.end(), [](const PendingPiece& a, const PendingPiece& b) {
    return a.piece.merge_index < b.piece.merge_index;
  });
  const int64_t total = pieces.front().piece.merge_total;
  FASTDIT_CHECK(static_cast<int64_t>(pieces.size()) == total || total == 1, "parameter '", name,
                "' is merged from ", total, " checkpoint tensors but ", pieces.size(), " were found");
  std::vector<PieceRecord> records;
  int64_t row = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto& [ck_name, piece] = pieces[i];
    FASTDIT_CHECK(piece.merge_index == static_cast<int64_t>(i) || pieces.size() == 1, "parameter '", name,
                  "': merge piece ", i, " missing or repeated (found index ", piece.merge_index, ")");
    const CheckpointTensor& info = *tensors.at(ck_name);
    FASTDIT_CHECK(is_floating(info.dtype), "checkpoint tensor '", ck_name, "' is ",
                  dtype_name(info.dtype), "; parameter '", name, "' needs a float dtype");
    const bool whole = piece.rows < 0 && pieces.size() == 1;
    if (whole) {
      FASTDIT_CHECK(info.shape == param.shape || (piece.reshape && same_but_unit_dims(info.shape, param.shape)),
                    "checkpoint tensor '", ck_name, "' has shape ", shape_str(info.shape), " but parameter '", name,
                    "' expects ", shape_str(param.shape), in_file(info));
    } else {
      FASTDIT_CHECK(!info.shape.empty() && param.shape.size() == info.shape.size() &&
                        std::equal(info.shape.begin() + 1, info.shape.end(), param.shape.begin() + 1),
                    "checkpoint tensor '", ck_name, "' ", shape_str(info.shape),
                    " cannot form rows of parameter '", name, "' ", shape_str(param.shape));
    }
    const int64_t rows = piece.rows < 0 ? info.shape.empty() ? 1 : info.shape[0] : piece.rows;
    FASTDIT_CHECK(whole || piece.checkpoint_row + rows <= info.shape[0], "checkpoint tensor '", ck_name,
                  "' ", shape_str(info.shape), " has no rows [", piece.checkpoint_row, ", ",
                  piece.checkpoint_row + rows, ") for parameter '", name, "'");
    records.push_back({ck_name, info.shape, info.dtype, piece.checkpoint_row, name, row, rows});
    row += rows;
  }
  const int64_t want = param.shape.empty() ? 1 : param.shape[0];
  FASTDIT_CHECK(records.size() == 1 || row == want, "parameter '", name, "' ", shape_str(param.shape),
                " gets ", row, " rows from its checkpoint pieces");
  return records;
}

// The parameter's value from its checkpoint pieces: written into `target` when that is
// defined (a view of the shared parameter storage), else into a new tensor.
Tensor materialize(const nn::Parameter& param, const std::vector<PieceRecord>& records,
                   const SafetensorsCheckpoint& checkpoint, Device device, DType dtype, Tensor target) {
  // One whole tensor (plan_parameter admitted its size-1 dims only where a reshape rule said so).
  if (records.size() == 1 && same_but_unit_dims(records[0].checkpoint_shape, param.shape)) {
    const Tensor source = checkpoint.tensor(records[0].checkpoint_name).reshape(param.shape);
    if (!target.defined()) return source.to(device, dtype);
    target.copy_(source);
    return target;
  }
  Tensor value = target.defined() ? target : Tensor::empty(param.shape, dtype, device);
  for (const auto& r : records) {
    Tensor source = checkpoint.tensor(r.checkpoint_name).narrow(0, r.checkpoint_row, r.rows);
    Tensor target = value.narrow(0, r.param_row, r.rows);
    target.copy_(source);
  }
  return value;
}

// On a CUDA device every parameter's value becomes a view into one allocation per dtype,
// each view starting 256-byte aligned, its contents left for the caller to fill. The
// caching allocator rounds each large block up to 2 MiB: over a DiT's hundreds of
// 4.5-26 MiB weight matrices that is ~10% of the weights (289 MiB of Wan 1.3B's
// 2,712 MiB). On the CPU parameters keep their own storage, so a checkpoint's tensors
// load without a copy. Returns whether the values were allocated.
bool allocate_parameters_together(DiTModel& model, const LoadOptions& options) {
  if (!options.device.is_cuda()) return false;
  struct Slot {
    nn::Parameter* param;
    DType dtype;
    int64_t offset;
  };
  std::vector<Slot> slots;
  std::map<DType, int64_t> ends;  // elements per dtype
  for (auto& [name, param] : model.named_parameters()) {
    const DType dtype = parameter_dtype(*param, options.dtype, options.precision);
    const auto align = static_cast<int64_t>(256 / dtype_size(dtype));
    int64_t& end = ends[dtype];
    end = (end + align - 1) / align * align;
    slots.push_back({param, dtype, end});
    end += shape_numel(param->shape);
  }
  std::map<DType, Tensor> storage;
  for (const auto& [dtype, elements] : ends) storage[dtype] = Tensor::empty({elements}, dtype, options.device);
  for (const Slot& slot : slots) {
    const Shape& shape = slot.param->shape;
    slot.param->value = storage[slot.dtype].narrow(0, slot.offset, shape_numel(shape)).reshape(shape);
  }
  return true;
}

// A parameter's value from its run-dtype values: as they are, or — when the parameter
// loads in FP8 — quantized per row (ops::quantize_fp8_rows), codes in value, scales in
// row_scales. `target` as in materialize.
void store_parameter(nn::Parameter& param, const Tensor& values, DType dtype, const Tensor& target) {
  if (dtype != DType::Float8E4M3) {
    param.value = values;
    return;
  }
  ops::Fp8Rows quantized = ops::quantize_fp8_rows(values);
  if (target.defined()) {
    param.value = target;
    param.value.copy_(quantized.values);
  } else {
    param.value = std::move(quantized.values);
  }
  param.row_scales = std::move(quantized.scales);
}

}  // namespace

namespace {
void require_weight_memory(DiTModel& model, const LoadOptions& options, const std::string& config_source) {
  require_memory(options.device, parameter_bytes(model, options.dtype, config_source, options.precision),
                 detail::concat(model.type_name(), "'s weights (", config_source, ", ", dtype_name(options.dtype), ")"));
}
}  // namespace

size_t parameter_bytes(DiTModel& model, DType run_dtype, const std::string& config_source, Precision precision) {
  int64_t total = 0;
  for (auto& [name, param] : model.named_parameters()) {
    const DType dtype = parameter_dtype(*param, run_dtype, precision);
    std::optional<int64_t> bytes = static_cast<int64_t>(dtype_size(dtype));
    for (int64_t d : param->shape) bytes = bytes ? checked_mul(*bytes, d) : bytes;
    // An FP8 weight's float32 scale per row.
    if (bytes && dtype == DType::Float8E4M3) bytes = checked_add(*bytes, 4 * param->shape.front());
    if (bytes) bytes = checked_add(total, *bytes);
    FASTDIT_CHECK(bytes.has_value(), config_source, ": parameter '", name, "' ", shape_str(param->shape),
                  " of ", model.type_name(), " would take more bytes than int64 can count (a size in the config is "
                  "too large)");
    total = *bytes;
  }
  return static_cast<size_t>(total);
}

size_t forward_activation_bytes(const DiTModel& model, const Shape& latents, DType run_dtype) {
  const DiTArchConfig& arch = model.arch_config();
  const double tokens = static_cast<double>(shape_numel(latents)) / static_cast<double>(std::max<int64_t>(arch.in_channels, 1) * 4);
  return static_cast<size_t>(3.0 * tokens * static_cast<double>(arch.hidden_size) * static_cast<double>(dtype_size(run_dtype)));
}

void require_forward_memory(const DiTModel& model, const Shape& latents, DType run_dtype, Device device,
                            size_t extra_bytes) {
  require_memory(device, forward_activation_bytes(model, latents, run_dtype) + extra_bytes,
                 detail::concat("a forward of ", model.type_name(), " on latents ", shape_str(latents), " in ",
                                dtype_name(run_dtype)));
}

DType parameter_dtype(const nn::Parameter& param, DType run_dtype, Precision precision) {
  if (param.policy == nn::DTypePolicy::KeepFloat32) return DType::Float32;
  return precision == Precision::Fp8 && param.fp8_capable ? DType::Float8E4M3 : run_dtype;
}

const char* precision_name(Precision precision) { return precision == Precision::Fp8 ? "fp8" : "bf16"; }

Precision parse_precision(std::string_view name, std::string_view what) {
  if (name == "bf16") return Precision::Bf16;
  if (name == "fp8") return Precision::Fp8;
  FASTDIT_FAIL(what, " ", name, ": expected bf16 (every linear in the run dtype) or fp8 (FP8 e4m3 GEMMs for the "
               "transformer blocks' linears)");
}

void check_precision(const LoadOptions& options, std::string_view what) {
  if (options.precision == Precision::Bf16) return;
  FASTDIT_CHECK(options.device.is_cuda(), what, " fp8 needs a CUDA device (FP8 GEMMs run on Hopper GPUs through "
                "cuBLASLt), got ", options.device.str());
  FASTDIT_CHECK(options.dtype == DType::BFloat16, what, " fp8 needs run dtype bfloat16 (the FP8 GEMMs write "
                "bfloat16), got ", dtype_name(options.dtype));
}

std::vector<CheckpointTensor> checkpoint_tensors(const SafetensorsCheckpoint& checkpoint) {
  std::vector<CheckpointTensor> tensors;
  for (const auto& name : checkpoint.names()) {
    const auto& info = checkpoint.info(name);
    tensors.push_back({name, info.shape, info.dtype, checkpoint.file_of(name).string()});
  }
  return tensors;
}

CheckpointMatch match_checkpoint(DiTModel& model, const std::vector<CheckpointTensor>& tensors,
                                 const std::string& location) {
  using Problem = CheckpointMatch::Problem;
  CheckpointMatch match;
  std::map<std::string, nn::Parameter*> params;
  for (auto& [name, param] : model.named_parameters()) params[name] = param;
  TensorIndex index;
  std::map<std::string, std::vector<PendingPiece>> by_param;
  for (const CheckpointTensor& tensor : tensors) {
    index[tensor.name] = &tensor;
    for (auto& piece : model.param_names_mapping().apply(tensor.name)) {
      if (!params.count(piece.param)) {
        match.findings.push_back({Problem::Extra, tensor.name,
                                  detail::concat("checkpoint tensor '", tensor.name, "'", in_file(tensor),
                                                 piece.param == tensor.name ? "" : " mapped to '" + piece.param + "'",
                                                 " has no parameter in ", model.type_name())});
        continue;
      }
      by_param[piece.param].push_back({tensor.name, piece});
    }
  }
  for (auto& [name, param] : model.named_parameters()) {
    if (!by_param.count(name)) {
      match.findings.push_back({Problem::Missing, name,
                                detail::concat("parameter '", name, "' ", shape_str(param->shape), " of ",
                                               model.type_name(), " has no tensor in the checkpoint at ", location)});
      continue;
    }
    // plan_parameter's checks throw; one parameter's failure must not hide the next one's.
    try {
      match.pieces[name] = plan_parameter(name, *param, std::move(by_param.at(name)), index);
    } catch (const Error& e) {
      match.findings.push_back({Problem::Mismatched, name, e.what()});
    }
  }
  return match;
}

DType parse_run_dtype(std::string_view name, std::string_view what) {
  const DType d = parse_dtype(name);
  FASTDIT_CHECK(d == DType::Float32 || d == DType::BFloat16 || d == DType::Float16, what, " ", name,
                ": models run in float32, bfloat16 or float16");
  return d;
}

namespace {
// Precision fp8 runs the 8-bit self-attention in a family that allows it (DiTModel::allows_quantized_attention).
void choose_attention_precision(DiTModel& model, const LoadOptions& options) {
  const char* env = std::getenv("FASTDIT_FP8_ATTENTION");
  const std::string_view setting = env ? env : "";
  FASTDIT_CHECK(setting.empty() || setting == "on" || setting == "off", "FASTDIT_FP8_ATTENTION=", setting,
                " is not on or off");
  model.set_quantized_attention(options.precision == Precision::Fp8 && model.allows_quantized_attention() &&
                                setting != "off");
}
}  // namespace

LoadedTransformer load_transformer(const fs::path& path, const LoadOptions& options) {
  check_precision(options, "LoadOptions::precision");
  synchronize(options.device);  // device initialisation (a CUDA context) is not part of the load
  const auto start = std::chrono::steady_clock::now();
  LoadedTransformer loaded;
  loaded.dir = resolve_transformer_dir(path);
  loaded.model = build_transformer(loaded.dir, options.build_options());
  DiTModel& model = *loaded.model;
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(loaded.dir);

  // Every parameter has its tensors, in shapes that fill it, before any device memory is
  // taken for them.
  CheckpointMatch match = match_checkpoint(model, checkpoint_tensors(checkpoint), loaded.dir.string());
  if (!match.findings.empty()) FASTDIT_FAIL(match.findings.front().message);
  require_weight_memory(model, options, (loaded.dir / "config.json").string());
  const bool together = allocate_parameters_together(model, options);
  size_t done = 0;
  for (auto& [name, param] : model.named_parameters()) {
    const auto& records = match.pieces.at(name);
    const DType dtype = parameter_dtype(*param, options.dtype, options.precision);
    if (dtype == DType::Float8E4M3) {  // staged in the run dtype, one weight at a time
      const Tensor staged = materialize(*param, records, checkpoint, options.device, options.dtype, Tensor{});
      store_parameter(*param, staged, dtype, together ? param->value : Tensor{});
    } else {
      param->value = materialize(*param, records, checkpoint, options.device, dtype, together ? param->value : Tensor{});
    }
    loaded.pieces.insert(loaded.pieces.end(), records.begin(), records.end());
    ++done;
    if (options.on_weights) options.on_weights(done, match.pieces.size());
    if (options.progress && (done % 64 == 0 || done == match.pieces.size()))
      std::cerr << "loading weights: " << done << "/" << match.pieces.size() << "\n";
  }
  choose_attention_precision(model, options);
  if (options.progress) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << "loaded " << match.pieces.size() << " parameters from " << checkpoint.paths().size()
              << " file(s) in " << seconds << " s\n";
  }
  return loaded;
}

void randomize_parameters(DiTModel& model, const LoadOptions& options, uint64_t seed) {
  check_precision(options, "LoadOptions::precision");
  require_weight_memory(model, options, model.type_name() + " config");
  const bool together = allocate_parameters_together(model, options);
  uint64_t index = 0;
  for (auto& [name, param] : model.named_parameters()) {
    const bool norm_weight = name.find("norm") != std::string::npos && name.ends_with(".weight");
    const float center = norm_weight ? 1.0f : 0.0f;
    const DType dtype = parameter_dtype(*param, options.dtype, options.precision);
    // An FP8 weight draws the same run-dtype values as under bf16, then is quantized.
    const Tensor values = ops::random_uniform(param->shape, dtype == DType::Float8E4M3 ? options.dtype : dtype,
                                              seed + 7919 * ++index, center - 0.05f, center + 0.05f);
    if (dtype == DType::Float8E4M3) {
      store_parameter(*param, values.to(options.device), dtype, together ? param->value : Tensor{});
    } else if (together) {
      param->value.copy_(values);
    } else {
      param->value = values.to(options.device);
    }
  }
  choose_attention_precision(model, options);
}

TensorMap read_model_inputs(const fs::path& path, const DiTModel& model, Device device) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const ModelIO io = model.io();
  TensorMap inputs;
  for (const auto& name : file.names()) {
    FASTDIT_CHECK(io.find_tensor(name), path.string(), ": input '", name, "' is not an input of ", model.type_name(),
                  " (accepted: ", io.accepted_names(), ")");
    inputs[name] = file.tensor(name).to(device);
  }
  for (const auto& spec : io.tensors)
    FASTDIT_CHECK(!spec.required || inputs.count(spec.name), path.string(), ": missing input '", spec.name, "' for ",
                  model.type_name());
  return inputs;
}

std::vector<std::pair<std::string, Tensor>> export_checkpoint(const LoadedTransformer& loaded) {
  std::vector<std::pair<std::string, Tensor>> out;
  std::map<std::string, size_t> slot;
  for (const auto& r : loaded.pieces) {
    if (!slot.count(r.checkpoint_name)) {
      slot[r.checkpoint_name] = out.size();
      out.emplace_back(r.checkpoint_name, Tensor::empty(r.checkpoint_shape, r.checkpoint_dtype));
    }
    const nn::Parameter* param = loaded.model->find_parameter(r.param);
    FASTDIT_CHECK(!param->row_scales.defined(), "export: parameter '", r.param, "' is stored in FP8 (precision fp8); "
                  "load with precision bf16 to write the checkpoint back");
    Tensor target = out[slot[r.checkpoint_name]].second;
    if (same_but_unit_dims(r.checkpoint_shape, param->shape) && r.param_row == 0 && r.checkpoint_row == 0) {
      target.copy_(param->value.reshape(r.checkpoint_shape));
    } else {
      Tensor rows = target.narrow(0, r.checkpoint_row, r.rows);
      rows.copy_(param->value.narrow(0, r.param_row, r.rows));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

}  // namespace fastdit
