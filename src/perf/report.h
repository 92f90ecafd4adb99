// `fastdit perf report`: one static HTML page of every cohort's history, drawn as inline
// SVG (no script, no server, nothing fetched), so it opens from disk and renders the same
// in a headless browser for the PNG kept next to it. The page carries its laid-out height
// in <meta name="fastdit-page-height"> for that screenshot.
#pragma once

#include <string>

#include "perf/baseline_store.h"
#include "perf/check.h"

namespace fastdit::perf {

std::string render_report_html(const BaselineStore& store, const BaselinePolicy& policy);

}  // namespace fastdit::perf
