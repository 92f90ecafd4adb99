#include "cli/commands.h"

namespace fastdit::cli {

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "print the config and tensor table of a model dir or file");
  auto path = std::make_shared<std::string>();
  cmd->add_option("path", *path, "model dir, transformer dir or .safetensors file")->required();
  cmd->callback([path] { (void)path; });
}

}  // namespace fastdit::cli
