#!/usr/bin/env bash
# fastdit scaffold: the new family's files appear where the build finds them, nothing is
# written on bad input; then, in a scratch copy of the source tree, the scaffolded family
# builds, its parity test is wired and fails as a porter meets it step by step (no case;
# a case whose weights the empty model lacks; the modules declared, `keys --against`
# agreeing, the forward not ported yet), and passes once the forward is written
# (tests/cli/scaffold/: a one-linear-layer model and its hand-computed case).
#
# The scratch build compiles the library once (about 6 minutes on 2 cores without a
# compiler cache; seconds with a warm ccache, CMAKE_CXX_COMPILER_LAUNCHER=ccache and
# CCACHE_BASEDIR at or above the source root, as scripts/test.sh sets); it lives in
# $FASTDIT_BINARY_DIR/scaffold_check/tree/build and later runs rebuild only the family.
set -u
fastdit=$1
root=$(cd "${FASTDIT_SOURCE_DIR:-.}" && pwd)
here=$root/tests/cli/scaffold
source "$(dirname "$0")/support.bash"

files=(src/configs/toy_config.h src/configs/toy_config.cc src/models/dits/toy.h src/models/dits/toy.cc
       tests/parity/test_toy_parity.cc tools/reference/specs/toy.py)

# ---- the files, and bad input ------------------------------------------------------------
small=$tmp/small
mkdir -p "$small/tools" && cp -r "$root/tools/scaffold" "$small/tools/"
expect 0 scaffold "$fastdit" scaffold toy --class ToyTransformerModel --into "$small"
for f in "${files[@]}"; do
  [[ -f $small/$f ]] || fail "scaffold did not write $f: $(cat "$tmp/out")"
  grep -q "wrote $small/$f$" "$tmp/out" || fail "scaffold did not report $f"
  ! grep -q "{{" "$small/$f" || fail "$f keeps a placeholder"
done
grep -q 'register_dit("ToyTransformerModel"' "$small/src/models/dits/toy.cc" || fail "no registration"
grep -q "struct ToyArchConfig : DiTArchConfig" "$small/src/configs/toy_config.h" || fail "no config struct"
grep -q "CLASS = \"diffusers.ToyTransformerModel\"" "$small/tools/reference/specs/toy.py" || fail "spec class"
cp -r "$small" "$tmp/before"
for bad in "exists:toy --class ToyTransformerModel --into $small:toy.cc: already exists" \
    "family:Toy-1 --class ToyTransformerModel --into $small:family 'Toy-1'" \
    "class:other --class 3D --into $small:--class '3D'" \
    "registered:wan_copy --class WanTransformer3DModel --into $small:already registered" \
    "no templates:toy --class ToyTransformerModel --into $tmp/absent:no scaffold templates"; do
  IFS=: read -r name args message <<<"$bad"
  # shellcheck disable=SC2086
  expect 2 "$name" "$fastdit" scaffold $args
  grep -q "^error: .*$message" "$tmp/out" || fail "$name: $(cat "$tmp/out")"
done
diff -r "$tmp/before" "$small" >/dev/null || fail "a refused scaffold changed files"

# ---- build it in a scratch tree ----------------------------------------------------------
check=${FASTDIT_BINARY_DIR:-$tmp}/scaffold_check
tree=$check/tree
mkdir -p "$tree"
find "$tree" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
# What the build reads, with the working tree's times, so a kept build rebuilds only the family.
(cd "$root" && git ls-files -co --exclude-standard -z -- CMakeLists.txt src tests/CMakeLists.txt tests/support \
  tests/unit tests/parity tests/cli tests/ops tests/temp_dir_check.sh tools/scaffold | tar --null -T - -c) | tar -x -C "$tree" \
  || fail "cannot copy the source tree (a git checkout is needed)"
expect 0 "scaffold in the tree" "$fastdit" scaffold toy --class ToyTransformerModel --into "$tree"
# Without a compiler cache the tree builds without CUDA (fewer, faster compiles); with one
# (CMAKE_CXX_COMPILER_LAUNCHER, as scripts/test.sh sets) it takes the main build's CUDA setting,
# so the library's objects are the cache's hits and only the family compiles.
cuda=OFF
[[ -n ${CMAKE_CXX_COMPILER_LAUNCHER:-} && ${FASTDIT_WITH_CUDA:-OFF} == ON ]] && cuda=ON
build() {
  { cmake -S "$tree" -B "$tree/build" -DCMAKE_BUILD_TYPE=Release -DFASTDIT_CUDA=$cuda -DFASTDIT_TESTS=ON \
    && cmake --build "$tree/build" -j"$(nproc)" --target fastdit_cli test_toy_parity; } >"$tmp/build.log" 2>&1 \
    || fail "$1: the scaffolded tree does not build: $(grep -m 20 -E 'error|Error' "$tmp/build.log")"
}
parity_test() { (cd "$tree/build" && FASTDIT_SOURCE_DIR=$tree tests/test_toy_parity); }
scratch=$tree/build/fastdit
case=$tree/tests/fixtures/toy/linear

build "as scaffolded"
expect 1 "no case yet" parity_test
grep -q "no parity case under $tree/tests/fixtures/toy" "$tmp/out" || fail "no case: $(cat "$tmp/out")"

python3 "$here/make_linear_case.py" "$case" ToyTransformerModel || fail "cannot make the linear case"
expect 0 "keys of the empty model" "$scratch" keys "$case"
grep -q "^model    ToyTransformerModel from .*: 0 parameters" "$tmp/out" || fail "keys: $(cat "$tmp/out")"
expect 1 "keys against the case" "$scratch" keys "$case" --against "$case"
tail -n 1 "$tmp/out" | grep -q "^DIFFER missing=0 extra=2 mismatched=0$" || fail "keys against: $(cat "$tmp/out")"
expect 1 "a case the empty model cannot load" parity_test
grep -q "checkpoint tensor 'proj_out\.[a-z]*' .*has no parameter in ToyTransformerModel" "$tmp/out" \
  || fail "load failure: $(cat "$tmp/out")"

python3 "$here/fill_linear_model.py" "$tree" modules || fail "cannot declare the modules"
build "modules declared"
expect 0 "keys agree" "$scratch" keys "$case" --against "$case"
tail -n 1 "$tmp/out" | grep -q "^AGREE 2 parameters filled by 2 tensors$" || fail "keys: $(cat "$tmp/out")"
expect 1 "forward not ported" parity_test
grep -q "ToyTransformerModel: forward is not ported yet (src/models/dits/toy.cc)" "$tmp/out" \
  || fail "not-ported failure: $(cat "$tmp/out")"
expect 2 "parity command, not ported" "$scratch" parity "$case"
grep -q "^error: ToyTransformerModel: forward is not ported yet" "$tmp/out" || fail "parity: $(cat "$tmp/out")"

python3 "$here/fill_linear_model.py" "$tree" forward || fail "cannot write the forward"
build "forward written"
expect 0 "filled parity test" parity_test
grep -q "\[  PASSED  \] 2 tests" "$tmp/out" || fail "filled: $(cat "$tmp/out")"
expect 0 "parity command" "$scratch" parity "$case"
tail -n 1 "$tmp/out" | grep -q "^PASS rel_l2=" || fail "parity: $(tail -n 1 "$tmp/out")"
echo "scaffold CLI checks passed"
