// Strict loading: every checkpoint tensor has a target, every parameter a tensor,
// shapes agree; the original Wan layout maps onto the native names and back exactly.
#include <gtest/gtest.h>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

const fs::path kCase = "tests/fixtures/wan/t2v/transformer";

// A copy of the t2v transformer whose weights are edited by `edit`.
fs::path edited_copy(const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  const fs::path src = testing::source_path(kCase.string());
  const fs::path dir = testing::temp_dir("loader");
  fs::copy_file(src / "config.json", dir / "config.json");
  const SafetensorsFile file = SafetensorsFile::open(src / "diffusion_pytorch_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : file.names()) tensors.emplace_back(name, file.tensor(name));
  edit(tensors);
  write_safetensors(dir / "diffusion_pytorch_model.safetensors", tensors);
  return dir;
}

std::string load_error(const fs::path& dir) {
  try {
    load_transformer(dir, {});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TransformerLoader, ExtraTensorIsAnError) {
  const auto dir = edited_copy([](auto& t) { t.emplace_back("blocks.0.extra.weight", Tensor::zeros({2}, DType::Float32)); });
  EXPECT_NE(load_error(dir).find("'blocks.0.extra.weight'"), std::string::npos) << load_error(dir);
}

TEST(TransformerLoader, MissingTensorIsAnError) {
  const auto dir = edited_copy([](auto& t) {
    std::erase_if(t, [](const auto& p) { return p.first == "blocks.1.attn2.to_k.bias"; });
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("'blocks.1.attn2.to_k.bias'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no tensor"), std::string::npos) << msg;
}

TEST(TransformerLoader, WrongShapeNamesBothShapes) {
  const auto dir = edited_copy([](auto& t) {
    for (auto& [name, tensor] : t)
      if (name == "proj_out.weight") tensor = Tensor::zeros({16, 31}, DType::Float32);
  });
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("[16, 31]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[16, 32]"), std::string::npos) << msg;
}

TEST(TransformerLoader, KeepsFloat32ModulesInFloat32) {
  LoadOptions options;
  options.dtype = DType::BFloat16;
  auto loaded = load_transformer(testing::source_path(kCase.string()), options);
  EXPECT_EQ(loaded.model->find_parameter("blocks.0.scale_shift_table")->value.dtype(), DType::Float32);
  EXPECT_EQ(loaded.model->find_parameter("condition_embedder.time_embedder.linear_1.weight")->value.dtype(), DType::Float32);
  EXPECT_EQ(loaded.model->find_parameter("blocks.0.norm2.weight")->value.dtype(), DType::Float32);
  EXPECT_EQ(loaded.model->find_parameter("blocks.0.attn1.to_q.weight")->value.dtype(), DType::BFloat16);
  EXPECT_EQ(loaded.model->find_parameter("condition_embedder.time_proj.weight")->value.dtype(), DType::BFloat16);
}

TEST(TransformerLoader, OriginalLayoutRoundTripsExactly) {
  const fs::path dir = testing::source_path("tests/fixtures/wan/t2v_original_layout/transformer");
  auto loaded = load_transformer(dir, {});
  // Every native parameter equals the diffusers-layout case's tensor of the same name.
  const SafetensorsFile diffusers = SafetensorsFile::open(testing::source_path(kCase.string()) / "diffusion_pytorch_model.safetensors");
  for (auto& [name, param] : loaded.model->named_parameters())
    EXPECT_EQ(testing::max_abs_diff(param->value, diffusers.tensor(name)), 0.0) << name;
  // Exporting gives back the original names and bytes.
  const SafetensorsFile original = SafetensorsFile::open(dir / "diffusion_pytorch_model.safetensors");
  const auto exported = export_checkpoint(loaded);
  ASSERT_EQ(exported.size(), original.names().size());
  for (const auto& [name, tensor] : exported) {
    ASSERT_TRUE(original.contains(name)) << name;
    const Tensor ref = original.tensor(name);
    EXPECT_EQ(tensor.shape(), ref.shape()) << name;
    EXPECT_EQ(std::memcmp(tensor.data_ptr(), ref.data_ptr(), ref.nbytes()), 0) << name;
  }
}

TEST(TransformerLoader, FusedProjectionsExportBackToTheOriginalLayout) {
  const fs::path dir = testing::source_path("tests/fixtures/wan/t2v_original_layout/transformer");
  LoadOptions options;
  options.fuse_projections = true;
  auto loaded = load_transformer(dir, options);
  const Tensor qkv = loaded.model->find_parameter("blocks.1.attn1.to_qkv.weight")->value;
  EXPECT_EQ(qkv.shape(), (Shape{96, 32}));
  const SafetensorsFile original = SafetensorsFile::open(dir / "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(testing::max_abs_diff(qkv.narrow(0, 32, 32).contiguous(), original.tensor("blocks.1.self_attn.k.weight")), 0.0);
  const auto exported = export_checkpoint(loaded);
  ASSERT_EQ(exported.size(), original.names().size());
  for (const auto& [name, tensor] : exported) {
    ASSERT_TRUE(original.contains(name)) << name;
    EXPECT_EQ(std::memcmp(tensor.data_ptr(), original.tensor(name).data_ptr(), tensor.nbytes()), 0) << name;
  }
}

TEST(ParamNameMapping, MergeAndSplitTileRows) {
  ParamNameMapping m;
  m.merge(R"(^a\.(q|k)$)", "a.qk", 0, 2);
  m.split(R"(^b$)", {{"b.top", 2}, {"b.bottom", 3}});
  auto merged = m.apply("a.q");
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_EQ(merged[0].param, "a.qk");
  EXPECT_EQ(merged[0].merge_total, 2);
  auto split = m.apply("b");
  ASSERT_EQ(split.size(), 2u);
  EXPECT_EQ(split[1].param, "b.bottom");
  EXPECT_EQ(split[1].checkpoint_row, 2);
  EXPECT_EQ(split[1].rows, 3);
  EXPECT_EQ(m.apply("c")[0].param, "c");
}

TEST(ParamNameMapping, ReorderRowsPlacesBlocksInTheGivenOrder) {
  ParamNameMapping m;
  m.reorder_rows(R"(^mod\.(weight|bias)$)", "norm.$1", {2, 3}, {1, 0});
  const auto pieces = m.apply("mod.bias");
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].param, "norm.bias");
  EXPECT_EQ(pieces[0].checkpoint_row, 0);
  EXPECT_EQ(pieces[0].rows, 2);
  EXPECT_EQ(pieces[0].merge_index, 1);  // the checkpoint's first block goes second
  EXPECT_EQ(pieces[1].checkpoint_row, 2);
  EXPECT_EQ(pieces[1].merge_index, 0);
  EXPECT_EQ(pieces[1].merge_total, 2);
  EXPECT_THROW(m.reorder_rows("x", "y", {1, 1}, {0, 0}), Error);
  EXPECT_THROW(m.reorder_rows("x", "y", {1, 1}, {0}), Error);
}

}  // namespace
}  // namespace fastdit
