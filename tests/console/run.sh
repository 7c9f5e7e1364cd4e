#!/usr/bin/env bash
# The console's browser test: loads the demo's data set into a temporary data directory with `cdp demo`,
# serves it with a known admin token and a read token, and drives the console in Debian's chromium with
# Playwright (console.mjs), which takes a screenshot of each page.
#
#   tests/console/run.sh [path/to/cdp]     (default: ${CARGO_TARGET_DIR:-target}/debug/cdp)
#   CONSOLE_SCREENSHOTS=docs/console tests/console/run.sh     (retake the README's screenshots)
#
# The screenshots go to a new temporary directory (printed; kept, to look at after a failure), so a run
# changes nothing in the working tree; CONSOLE_SCREENSHOTS names another directory (relative to the
# repository's root): docs/console/ for the ones the README shows.
#
# `cdp demo` runs the `cdp-bench` binary beside cdp: `cargo build` builds both.
#
# Needs node and npm (playwright-core is installed here, into tests/console/node_modules) and
# /usr/bin/chromium (`apt-get install -y chromium`). CDP_DEMO_CUSTOMERS sets the data set's size.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cdp="${1:-${CARGO_TARGET_DIR:-$root/target}/debug/cdp}"
customers="${CDP_DEMO_CUSTOMERS:-600}"
port="${CDP_CONSOLE_PORT:-18282}"

data_dir=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$data_dir"
}
trap cleanup EXIT

if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi

echo "loading the demo data set ($customers customers) into $data_dir"
"$cdp" demo --customers "$customers" --data-dir "$data_dir" >"$data_dir/demo.log" 2>&1 || { cat "$data_dir/demo.log"; exit 1; }
# The featured customer: "360 profile of <user id> (<name>), by user_id".
user_id=$(sed -n 's/^360 profile of \([^ ]*\) .*/\1/p' "$data_dir/demo.log" | head -n1)
[ -n "$user_id" ] || { cat "$data_dir/demo.log"; echo "the demo named no featured customer" >&2; exit 1; }
echo "featured customer: $user_id"

admin_token="tok_console_admin_$RANDOM$RANDOM"
read_token="tok_console_read_$RANDOM$RANDOM"
cat >"$data_dir/cdp.toml" <<TOML
[[workspace]]
id = "demo"
write_keys = ["wk_console_ci"]

[[workspace.token]]
token = "$read_token"
scopes = ["read"]
TOML
CDP_LISTEN="127.0.0.1:$port" CDP_DATA_DIR="$data_dir" CDP_CONFIG="$data_dir/cdp.toml" \
  CDP_BOOTSTRAP_WORKSPACE=demo CDP_BOOTSTRAP_ADMIN_TOKEN="$admin_token" \
  "$cdp" serve >"$data_dir/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 60); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$data_dir/serve.log"; exit 1; }

cd "$root"
if [ -n "${CONSOLE_SCREENSHOTS:-}" ]; then
  shots="$CONSOLE_SCREENSHOTS"
else
  shots=$(mktemp -d "${TMPDIR:-/tmp}/cdp-console-screenshots.XXXXXX")
fi
echo "screenshots: $shots"
CDP_URL="http://127.0.0.1:$port" CDP_TOKEN="$admin_token" CDP_READ_TOKEN="$read_token" CDP_USER_ID="$user_id" \
  SCREENSHOTS="$shots" timeout 240 node "$here/console.mjs" \
  || { echo "--- serve.log (tail)"; tail -n 40 "$data_dir/serve.log"; exit 1; }
