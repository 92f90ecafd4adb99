// fastdit scaffold <family> --class <ClassName> [--into <source root>]: a new family's
// files from the templates under <root>/tools/scaffold/family/ (each path and text with
// FAMILY and the {{...}} placeholders filled): the config pair, the model pair with a
// registered model whose forward says it is not ported yet, a case spec for
// tools/reference/make_cases.py and a parity test that finds the family's cases. The
// build globs src/ and tests/, so the next build compiles and registers it.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <unistd.h>

#include "cli/commands.h"
#include "core/files.h"
#include "models/dit.h"

namespace fastdit::cli {

namespace {

namespace fs = std::filesystem;

struct ScaffoldOptions {
  std::string family;
  std::string class_name;
  std::string into = ".";
};

// stable_audio -> StableAudio
std::string camel_case(const std::string& family) {
  std::string out;
  bool upper = true;
  for (char c : family) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

struct Rendered {
  fs::path target;
  std::string text;
};

std::vector<Rendered> render(const fs::path& templates, const fs::path& root, const ScaffoldOptions& o) {
  const std::pair<std::string, std::string> fields[] = {{"{{family}}", o.family},
                                                        {"{{Family}}", camel_case(o.family)},
                                                        {"{{Class}}", o.class_name},
                                                        {"{{Config}}", camel_case(o.family) + "ArchConfig"}};
  std::vector<Rendered> files;
  for (const auto& entry : fs::recursive_directory_iterator(templates)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".in") continue;
    const fs::path relative = fs::relative(entry.path(), templates).replace_extension();
    std::ifstream in(entry.path(), std::ios::binary);
    FASTDIT_CHECK(in, entry.path().string(), ": cannot read");
    std::ostringstream text;
    text << in.rdbuf();
    Rendered file{root / replace_all(relative.string(), "FAMILY", o.family), text.str()};
    for (const auto& [key, value] : fields) file.text = replace_all(file.text, key, value);
    if (const size_t at = file.text.find("{{"); at != std::string::npos)
      FASTDIT_FAIL(entry.path().string(), ": unknown placeholder ", file.text.substr(at, file.text.find("}}", at) + 2 - at));
    FASTDIT_CHECK(!fs::exists(file.target), file.target.string(), ": already exists (scaffold writes new files only)");
    files.push_back(std::move(file));
  }
  FASTDIT_CHECK(!files.empty(), templates.string(), ": no *.in templates");
  std::sort(files.begin(), files.end(), [](const Rendered& a, const Rendered& b) { return a.target < b.target; });
  return files;
}

// Each file whole or not at all (core/files.h): written beside its target, then renamed.
void write_file(const Rendered& file) {
  write_file_atomically(file.target, file.text, {.label = "--into", .create_parents = true});
}

void scaffold(const ScaffoldOptions& o) {
  FASTDIT_CHECK(std::regex_match(o.family, std::regex("[a-z][a-z0-9_]*")), "family '", o.family,
                "': expected a lower-case identifier such as stable_audio (it names files and a namespace)");
  FASTDIT_CHECK(std::regex_match(o.class_name, std::regex("[A-Za-z_][A-Za-z0-9_]*")), "--class '", o.class_name,
                "': expected the official class name, a C++ identifier such as LTX2VideoTransformer3DModel");
  for (const auto& known : registered_dits())
    FASTDIT_CHECK(known != o.class_name, "--class ", o.class_name, ": already registered in this build");
  const fs::path root = o.into;
  const fs::path templates = root / "tools" / "scaffold" / "family";
  FASTDIT_CHECK(fs::is_directory(templates), templates.string(),
                ": no scaffold templates (--into must be a fastdit source root)");
  // Everything is checked before the first file is written.
  const auto files = render(templates, root, o);
  for (const Rendered& file : files) {
    write_file(file);
    std::cout << "wrote " << file.target.lexically_normal().string() << "\n";
  }
  std::cout << "next: build (cmake --build build), then `build/fastdit keys <config.json>`; docs/porting.md "
               "walks the rest\n";
}

}  // namespace

void add_scaffold_command(CLI::App& app) {
  auto options = std::make_shared<ScaffoldOptions>();
  auto* cmd = app.add_subcommand(
      "scaffold", "write a new family's config, registered model (forward not ported yet), case spec and parity test");
  cmd->add_option("family", options->family, "lower-case family name: file names and the C++ namespace")->required();
  cmd->add_option("--class", options->class_name, "the official class name (config.json _class_name)")->required();
  cmd->add_option("--into", options->into, "fastdit source root to write into")->capture_default_str();
  cmd->callback([options] { scaffold(*options); });
}

}  // namespace fastdit::cli
