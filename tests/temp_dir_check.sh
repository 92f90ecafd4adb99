#!/usr/bin/env bash
# The scratch folder every test gets as TMPDIR (tests/CMakeLists.txt): `setup` empties it
# before the tests, `check` runs after all of them (a CTest fixture, so also under -j) and
# fails listing whatever a test left behind in it.
set -u
mode=$1 dir=$2
case $mode in
  setup)
    rm -rf "$dir" && mkdir -p "$dir" || { echo "FAIL: cannot make $dir"; exit 1; }
    echo "test scratch folder $dir" ;;
  check)
    [[ -d $dir ]] || { echo "FAIL: $dir is gone (a test removed the scratch folder itself)"; exit 1; }
    left=$(find "$dir" -mindepth 1 -maxdepth 1 | sort)
    if [[ -n $left ]]; then
      echo "FAIL: tests left these behind in their TMPDIR $dir:"
      echo "$left" | sed 's/^/  /'
      exit 1
    fi
    echo "no test left anything in $dir" ;;
  *) echo "usage: $0 setup|check DIR"; exit 2 ;;
esac
