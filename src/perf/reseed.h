// `fastdit perf reseed`: moves a cohort's baseline after a reviewed, intentional shift
// (a driver or library upgrade, a new machine image), never to hide a suspected code
// regression. The batch must be one cohort of one model on one GPU type, every record a
// successful run not already in the store, and the records must agree among themselves:
// none may be further from the batch median than the regression thresholds allow. The
// old cohort file is copied to the backup folder with a PROVENANCE.txt, then the batch
// is appended marked as reseed (eligible). Every rejection is an error (exit 2).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "perf/baseline_store.h"
#include "perf/check.h"

namespace fastdit::perf {

struct ReseedRequest {
  std::string reason;                  // why the shift is accepted; kept in every record
  std::filesystem::path backup_root;   // a timestamped folder is made under it
  BaselinePolicy policy;
};

struct ReseedOutcome {
  std::filesystem::path cohort_file;
  std::filesystem::path backup;  // empty when the cohort had no file
  std::map<std::string, double> before, batch, after;  // medians (before: last window)
  int eligible_after = 0;
};

// Throws with the rule that rejected the batch; changes nothing then.
void validate_reseed_batch(const std::vector<PerfRecord>& batch, const BaselineStore& store);
ReseedOutcome reseed(const std::vector<PerfRecord>& batch, const BaselineStore& store, const ReseedRequest& request);
std::string format_reseed(const ReseedOutcome& outcome, const BaselinePolicy& policy);

}  // namespace fastdit::perf
