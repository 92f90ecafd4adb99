// fastdit keys <config.json | model dir>: the native model's parameter surface (name, shape,
// load dtype) from a config alone, as a table or a key dump (--json); --against checks a
// key dump or a checkpoint through the model's name mapping, exactly as loading would.
// Exit 0 when they agree, 1 when they differ, 2 on bad input.
#include <filesystem>
#include <iostream>
#include <map>

#include "cli/common.h"
#include "loader/key_dump.h"

namespace fastdit::cli {

namespace {

namespace fs = std::filesystem;
using Problem = CheckpointMatch::Problem;

struct KeysOptions {
  std::string model;
  std::string dtype = "float32";
  std::string fuse = "off";
  std::string against;
  bool json = false;
  bool dtype_given = false;  // --dtype on the command line: a dump's dtypes are compared too
};

std::vector<CheckpointTensor> native_keys(DiTModel& model, DType dtype) {
  std::vector<CheckpointTensor> keys;
  for (auto& [name, param] : model.named_parameters())
    keys.push_back({name, param->shape, parameter_dtype(*param, dtype), ""});
  return keys;
}

void print_table(const std::vector<CheckpointTensor>& keys) {
  std::vector<std::vector<std::string>> rows{{"name", "dtype", "shape"}};
  std::map<std::string, std::pair<int64_t, int64_t>> per_dtype;  // tensors, elements
  int64_t total = 0;
  for (const auto& key : keys) {
    rows.push_back({key.name, dtype_name(key.dtype), shape_str(key.shape)});
    auto& [tensors, elements] = per_dtype[dtype_name(key.dtype)];
    ++tensors;
    elements += shape_numel(key.shape);
    total += shape_numel(key.shape);
  }
  print_columns(std::cout, rows);
  const auto count = [](int64_t tensors, int64_t elements) {
    return detail::concat(tensors, tensors == 1 ? " tensor, " : " tensors, ", elements, " parameters (",
                          human_count(static_cast<uint64_t>(elements)), ")");
  };
  std::cout << "\ntotal: " << count(static_cast<int64_t>(keys.size()), total) << "\n";
  for (const auto& [dtype, sums] : per_dtype) std::cout << "  " << dtype << ": " << count(sums.first, sums.second) << "\n";
}

struct Reference {
  std::vector<CheckpointTensor> tensors;
  bool dump = false;  // a key dump (its dtypes are load dtypes), else a checkpoint (storage dtypes)
  std::string about;
};

// A .json that is not a shard index is a key dump; anything else is opened as a checkpoint.
Reference read_reference(const fs::path& path) {
  FASTDIT_CHECK(fs::exists(path), "--against ", path.string(), ": no such file or directory");
  const std::string name = path.filename().string();
  if (fs::is_regular_file(path) && name.ends_with(".json") && !name.ends_with(".index.json")) {
    Reference ref{read_key_dump(path), true, ""};
    ref.about = detail::concat("key dump, ", ref.tensors.size(), " tensors");
    return ref;
  }
  const SafetensorsCheckpoint checkpoint =
      SafetensorsCheckpoint::open(fs::is_directory(path) ? transformer_dir(path) : path);
  Reference ref{checkpoint_tensors(checkpoint), false, ""};
  ref.about = detail::concat("checkpoint, ", ref.tensors.size(), " tensors in ", checkpoint.paths().size(), " file(s)");
  return ref;
}

// A dump's dtypes are what a load in --dtype gives each tensor: a parameter whose policy
// gives another (a norm the reference keeps in float32 and we do not) differs.
void compare_load_dtypes(DiTModel& model, DType dtype, CheckpointMatch& match) {
  for (const auto& [name, records] : match.pieces) {
    const DType ours = parameter_dtype(*model.find_parameter(name), dtype);
    for (const PieceRecord& r : records)
      if (r.checkpoint_dtype != ours)
        match.findings.push_back({Problem::Mismatched, name,
                                  detail::concat("parameter '", name, "' loads as ", dtype_name(ours),
                                                 " but the dump gives '", r.checkpoint_name, "' ",
                                                 dtype_name(r.checkpoint_dtype))});
  }
}

int check_against(DiTModel& model, const Reference& ref, const KeysOptions& options, DType dtype) {
  CheckpointMatch match = match_checkpoint(model, ref.tensors, options.against);
  if (ref.dump && options.dtype_given) compare_load_dtypes(model, dtype, match);
  std::cout << "against  " << options.against << ": " << ref.about << "\n";
  const std::pair<Problem, const char*> sections[] = {
      {Problem::Missing, "missing (parameters no tensor maps to)"},
      {Problem::Extra, "extra (tensors that map to no parameter)"},
      {Problem::Mismatched, "mismatched (parameters their tensors cannot fill)"}};
  std::map<Problem, size_t> counts;
  for (const auto& [problem, title] : sections) {
    bool first = true;
    for (const auto& finding : match.findings) {
      if (finding.problem != problem) continue;
      if (first) std::cout << title << ":\n";
      first = false;
      ++counts[problem];
      std::cout << "  " << finding.message << "\n";
    }
  }
  if (match.findings.empty()) {
    std::cout << "AGREE " << match.pieces.size() << " parameters filled by " << ref.tensors.size() << " tensors\n";
    return 0;
  }
  std::cout << "DIFFER missing=" << counts[Problem::Missing] << " extra=" << counts[Problem::Extra]
            << " mismatched=" << counts[Problem::Mismatched] << "\n";
  return 1;
}

int keys(const KeysOptions& options) {
  const DType dtype = parse_run_dtype(options.dtype, "--dtype");
  FASTDIT_CHECK(options.fuse == "on" || options.fuse == "off", "--fuse ", options.fuse, ": expected on or off");
  BuildOptions build;
  build.fuse_projections = options.fuse == "on";
  const auto model = build_transformer(options.model, build);
  const auto native = native_keys(*model, dtype);
  // Read before anything is printed: bad input is an error line alone.
  const std::optional<Reference> ref =
      options.against.empty() ? std::nullopt : std::optional(read_reference(options.against));
  if (options.json) {
    nlohmann::ordered_json header{{"class_name", model->type_name()},
                                  {"config", options.model},
                                  {"dtype", dtype_name(dtype)},
                                  {"fuse_projections", build.fuse_projections}};
    write_key_dump(std::cout, header, native);
    return 0;
  }
  std::cout << "model    " << model->type_name() << " from " << options.model << ": " << native.size()
            << " parameters in " << dtype_name(dtype) << ", projections " << (build.fuse_projections ? "fused" : "unfused")
            << "\n";
  if (ref) return check_against(*model, *ref, options, dtype);
  std::cout << "\n";
  print_table(native);
  return 0;
}

}  // namespace

void add_keys_command(CLI::App& app) {
  auto options = std::make_shared<KeysOptions>();
  auto* cmd = app.add_subcommand(
      "keys", "the model's parameter names, shapes and load dtypes from its config alone; --against checks a "
              "key dump or checkpoint through the model's name mapping");
  cmd->add_option("model", options->model, "config.json or model dir")->required();
  auto* dtype = cmd->add_option("--dtype", options->dtype,
                                "run dtype the load dtypes follow (keep-float32 parameters stay float32); given, a "
                                "key dump's dtypes are compared too")
                    ->capture_default_str();
  cmd->add_option("--fuse", options->fuse, "fused q|k|v projections (the surface CUDA loads): on or off")
      ->capture_default_str();
  auto* json = cmd->add_flag("--json", options->json, "write a key dump (tools/reference/dump_*_keys.py's layout)");
  cmd->add_option("--against", options->against,
                  "key dump (.json) or checkpoint (.safetensors, index json or dir): list missing, extra and "
                  "mismatched names; exit 1 when they differ")
      ->excludes(json);
  cmd->callback([options, dtype] {
    options->dtype_given = dtype->count() > 0;
    exit_code() = keys(*options);
  });
}

}  // namespace fastdit::cli
