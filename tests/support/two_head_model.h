// A synthetic DiT with two token streams and two output heads, typed non-tensor arguments
// and a tuple-returning block: the shape of LTX-2's I/O at a size a test can check by
// hand. It exercises the I/O declaration through run, parity, CapturedForward and the
// trace without any real family.
//
//   config.json: {"_class_name": "TwoHeadTestModel", "in_channels": C, "audio_in_channels": A}
//   inputs:  hidden_states [B, S, C], audio_hidden_states [B, Sa, A], timestep [B]
//   args:    num_frames (int, required), scale (float, default 1), negate_audio (bool,
//            default false), offsets (int list, optional)
//   outputs: sample       = (proj(hidden_states) + timestep) * scale * num_frames * (1 + sum(offsets))
//            audio_sample = audio_proj(audio_hidden_states) * (negate_audio ? -1 : 1)
// where proj / audio_proj are the block `block` (modules block.proj and block.audio_proj),
// whose trace records are block.proj "out", block.audio_proj "out" and block "out[0]" /
// "out[1]".
#pragma once

#include <filesystem>
#include <string>

#include "models/dit.h"

namespace fastdit::testing {

inline constexpr const char* kTwoHeadClass = "TwoHeadTestModel";

// Adds the class to the registry (idempotent).
void register_two_head_model();

// Writes a parity case for the model: seeded weights, inputs, args.json and both heads'
// float32 references (computed by plain loops, not through the model) with their bf16
// runs (the same loops on bf16-rounded inputs and weights).
void write_two_head_case(const std::filesystem::path& dir, uint64_t seed);

}  // namespace fastdit::testing
