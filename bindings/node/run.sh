#!/usr/bin/env bash
# Runs the TypeScript API that uniffi-bindgen-react-native (ubrn) generates for Tether on
# Node (N-API flavour) against the real debug libtether.so and the `tether serve`
# contract server. See README.md.
#
#   bash bindings/node/run.sh        (from anywhere; needs node 20+, npm, cargo)
#
# 1. npm ci (only if node_modules is missing). The first ubrn call afterwards builds
#    ubrn's own Rust CLI inside node_modules (2-3 min, ~1.5 GB, once).
# 2. cargo build -p tether -p tether-cli (debug)
# 3. ubrn generate napi bindings -> bindings/node/generated/ (gitignored)
# 4. tsc --noEmit (strict) over the generated code and the test
# 5. tsx test/scenario.ts: prints `N passed, M failed` last, exits 1 on any failure
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$here/../.." && pwd)"
gen="$here/generated"

phase() { printf '==> %s\n' "$*" >&2; }
t0=$SECONDS

if [ ! -d "$here/node_modules" ]; then
  phase "npm ci"
  (cd "$here" && npm ci --no-audit --no-fund)
fi

phase "cargo build -p tether -p tether-cli (debug)"
(cd "$crate" && cargo build -q -p tether -p tether-cli)
target_dir="$(cd "$crate" && cargo metadata --format-version 1 --no-deps |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
lib="$target_dir/debug/libtether.so"
server="$target_dir/debug/tether"
[ -f "$lib" ] || { echo "missing $lib" >&2; exit 1; }
[ -x "$server" ] || { echo "missing $server" >&2; exit 1; }

ubrn="$here/node_modules/uniffi-bindgen-react-native/bin/cli.cjs"
if [ ! -d "$here/node_modules/uniffi-bindgen-react-native/target" ]; then
  # cli.cjs is `cargo run` of ubrn's own crate: the first call compiles it.
  phase "first run: building the ubrn CLI with cargo (2-3 min, once)"
  t1=$SECONDS
  node "$ubrn" --help >/dev/null
  phase "ubrn CLI built in $((SECONDS - t1)) s"
fi

phase "ubrn generate napi bindings -> $gen"
rm -rf "$gen"
# ubrn must run from the crate dir: it runs `cargo metadata` in cwd and reads the crate's
# uniffi.toml. `--lib-absolute` bakes the absolute path of the .so into the generated code.
(cd "$crate" && node "$ubrn" generate napi bindings --library --lib-absolute --no-format \
  --ts-dir "$gen" "$lib")
for f in index.ts tether.ts tether-ffi.ts; do
  [ -s "$gen/$f" ] || { echo "ubrn wrote no $gen/$f" >&2; exit 1; }
done
# uniffi.toml sets `[bindings.typescript] strictTypeChecking = true`: no `// @ts-nocheck`.
if grep -l '^// @ts-nocheck' "$gen"/*.ts >/dev/null; then
  echo "generated TypeScript is marked @ts-nocheck: check uniffi.toml" >&2; exit 1
fi

cd "$here"
phase "tsc --noEmit (strict): generated bindings + test"
npx --no-install tsc --noEmit -p tsconfig.json

phase "tsx test/scenario.ts (setup took $((SECONDS - t0)) s)"
exec npx --no-install tsx test/scenario.ts "$server"
