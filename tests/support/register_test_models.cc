// Linked into fastdit_test_cli only: the CLI with the synthetic test models registered.
#include "support/two_head_model.h"

namespace {
[[maybe_unused]] const bool kRegistered = (fastdit::testing::register_two_head_model(), true);
}  // namespace
