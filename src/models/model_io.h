// A model's I/O declaration: the tensor inputs and typed non-tensor arguments its forward
// takes, named as the official forward's keyword arguments, and the output heads it
// returns, named as the reference names them. Every consumer (run, parity, bench, the
// denoising loop, CapturedForward, the C API) reads the declaration instead of knowing
// names, and DiTModel::forward checks every call against it before the model runs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.h"

namespace fastdit {

// Inputs named as the reference forward's keyword arguments.
using TensorMap = std::map<std::string, Tensor>;

// What element type a tensor input accepts. Number: any floating or integer dtype (a
// timestep a pipeline passes as int64 or float).
enum class ElementKind { Floating, Integer, Bool, Number };

// The part a tensor input plays in a denoising loop (sampling/denoise.h) and in synthetic
// inputs; Other for everything the loop does not feed.
enum class InputRole { Latents, Timestep, TextEmbeddings, Other };

struct TensorInputSpec {
  std::string name;
  std::vector<int64_t> ranks;  // accepted ranks; empty: any
  ElementKind kind = ElementKind::Floating;
  bool required = true;
  InputRole role = InputRole::Other;
  // The forward reads this input's values on the host (positions that pick a rotary table):
  // a captured forward (models/captured_forward.h) keeps it on the host and keys its graphs
  // on the values, so a replay never meets a table built for other values.
  bool read_on_host = false;
};

enum class ArgType { Bool, Int, Float, IntList, FloatList };
using ArgValue = std::variant<bool, int64_t, double, std::vector<int64_t>, std::vector<double>>;
using ArgMap = std::map<std::string, ArgValue>;

struct ArgSpec {
  std::string name;
  ArgType type = ArgType::Int;
  // Used when the call leaves the argument out; none: the argument is optional and its
  // absence means what the reference's None means.
  std::optional<ArgValue> default_value;
  bool required = false;
};

struct ModelIO {
  std::vector<TensorInputSpec> tensors;
  std::vector<ArgSpec> args;
  std::vector<std::string> outputs;  // output heads; the first is the denoiser's prediction
  // Heads only some calls return, when an argument asks for them (LongCat's return_kv: every
  // block's keys and values, `kv_cache.<i>.k` / `.v`), in the order they are returned.
  std::vector<std::string> optional_outputs;

  const TensorInputSpec* find_tensor(const std::string& name) const;
  const ArgSpec* find_arg(const std::string& name) const;
  // The name of the tensor input with this role; empty when the model has none.
  std::string name_of(InputRole role) const;
  // "a, b, c": the accepted tensor and argument names, for error messages.
  std::string accepted_names() const;
  bool has_output(const std::string& name) const;
  bool has_optional_output(const std::string& name) const;
};

// The named input of a checked call, or an undefined tensor where an optional input was left
// out.
const Tensor& input_or_none(const TensorMap& inputs, const std::string& name);

const char* arg_type_name(ArgType type);
std::string arg_value_str(const ArgValue& value);

// Keyword arguments the reference forwards take that change nothing here (how results
// are returned, hooks for attention processors); accepted and dropped wherever args are
// read, so a case or a caller written against the reference needs no editing.
bool is_ignored_reference_arg(const std::string& name);

// Checks the call against the declaration: every tensor's name, rank and element kind,
// every required input present, every argument's name and type (ints are accepted for
// floats, nothing else converts); returns the arguments with the declared defaults filled
// in. Errors name the model (`what`) and the offending input.
ArgMap check_call(const ModelIO& io, const std::string& what, const TensorMap& inputs, const ArgMap& args);

// Typed reads of checked arguments (after check_call every declared default is present).
bool arg_bool(const ArgMap& args, const std::string& name);
int64_t arg_int(const ArgMap& args, const std::string& name);
double arg_float(const ArgMap& args, const std::string& name);
std::optional<std::vector<int64_t>> arg_int_list(const ArgMap& args, const std::string& name);
std::optional<std::vector<double>> arg_float_list(const ArgMap& args, const std::string& name);

// The arguments of a JSON object (args.json, `run --args`) as the declaration types them:
// null is an absent argument, an unknown name is an error listing the accepted ones.
ArgMap args_from_json(const ModelIO& io, const nlohmann::json& object, const std::string& source);
ArgMap read_args_file(const std::filesystem::path& path, const ModelIO& io);

}  // namespace fastdit
