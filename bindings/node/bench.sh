#!/usr/bin/env bash
# The TypeScript part of `scripts/bench ffi` (see bench/ffi-stream.ts): the same setup as
# run.sh (npm ci, the ubrn CLI), but bindings generated from the RELEASE libtether.so into
# generated-bench/ (gitignored), and a release `tether serve`. Prints one `bench ...` line.
#
#   bash bindings/node/bench.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$here/../.." && pwd)"
gen="$here/generated-bench"
phase() { printf '==> %s\n' "$*" >&2; }

if [ ! -d "$here/node_modules" ]; then
  phase "npm ci"
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi

phase "cargo build --release -p tether, tether-cli (tether)"
(cd "$crate" && cargo build -q --release -p tether && cargo build -q --release -p tether-cli --bin tether)
target_dir="$(cd "$crate" && cargo metadata --format-version 1 --no-deps |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
# Copied, so that another build in the same target dir cannot swap the library under the
# generated code (which bakes in its checksums and, with --lib-absolute, its path).
bin="$here/generated-bench/bin"
rm -rf "$gen" && mkdir -p "$bin"
cp "$target_dir/release/libtether.so" "$target_dir/release/tether" "$bin/"

ubrn="$here/node_modules/uniffi-bindgen-react-native/bin/cli.cjs"
if [ ! -d "$here/node_modules/uniffi-bindgen-react-native/target" ]; then
  phase "first run: building the ubrn CLI with cargo (2-3 min, once)"
  node "$ubrn" --help >/dev/null
fi
phase "ubrn generate napi bindings (release library) -> $gen"
(cd "$crate" && node "$ubrn" generate napi bindings --library --lib-absolute --no-format \
  --ts-dir "$gen" "$bin/libtether.so" >&2)
[ -s "$gen/index.ts" ] || { echo "ubrn wrote no $gen/index.ts" >&2; exit 1; }

cd "$here"
phase "tsx bench/ffi-stream.ts"
exec npx --no-install tsx bench/ffi-stream.ts "$bin/tether"
