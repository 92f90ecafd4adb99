// The CPU kernels behind ops/: the shared kernel vocabulary of backends/backend_ops.def
// (its contract there), declared in fastdit::cpu::.
#pragma once

#include <span>

#include "core/tensor.h"
#include "ops/ops.h"

namespace fastdit::cpu {

#define FASTDIT_BACKEND_OP(name, parameters) void name parameters;
#include "backends/backend_ops.def"
#undef FASTDIT_BACKEND_OP

}  // namespace fastdit::cpu
