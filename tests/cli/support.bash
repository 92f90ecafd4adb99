# Sourced by CLI tests: a scratch folder $tmp removed on exit, `fail`, and `expect`.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# expect <code> <name> <command...>: runs it into $tmp/out and checks the exit code.
expect() {
  local code=$1 name=$2
  shift 2
  "$@" >"$tmp/out" 2>&1
  local got=$?
  ((got == code)) || fail "$name: exit $got, expected $code: $(tail -c 3000 "$tmp/out")"
}
