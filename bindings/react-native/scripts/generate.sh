#!/usr/bin/env bash
# Generates the JSI bindings of react-native-tether from the Rust source: builds the host
# debug library (unstripped: ubrn reads the UniFFI metadata embedded in it), then
#   src/generated/{tether.ts,tether-ffi.ts}   the TypeScript API and its JSI FFI layer
#   cpp/generated/{tether.hpp,tether.cpp}     the C++ JSI bindings
# Both are gitignored and written at build/pack time (`npm pack` runs this as `prepack`);
# the turbo-module scaffold around them is committed (see README.md).
#
#   bash scripts/generate.sh            (from anywhere; needs node, npm, cargo)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

phase "cargo build -p tether -p tether-cli (debug, host)"
# With tether-cli, as bindings/node does: the same feature set, so neither rebuilds the other.
(cd "$rn_crate" && cargo build -q -p tether -p tether-cli)
lib="$(rn_target_dir)/debug/libtether.so"
[ -f "$lib" ] || lib="${lib%.so}.dylib"
[ -f "$lib" ] || { echo "missing $lib" >&2; exit 1; }

phase "ubrn generate jsi bindings -> src/generated, cpp/generated"
rm -rf "$rn_here/src/generated" "$rn_here/cpp/generated"
# From the crate root: ubrn runs `cargo metadata` in its working directory and reads the
# crate's uniffi.toml there (`--library` cannot be combined with `--config`).
(cd "$rn_crate" && rn_ubrn generate jsi bindings --library --no-format \
  --ts-dir "$rn_here/src/generated" --cpp-dir "$rn_here/cpp/generated" "$lib")
for f in src/generated/tether.ts src/generated/tether-ffi.ts cpp/generated/tether.hpp cpp/generated/tether.cpp; do
  [ -s "$rn_here/$f" ] || { echo "ubrn wrote no $f" >&2; exit 1; }
done
if grep -l '^// @ts-nocheck' "$rn_here"/src/generated/*.ts >/dev/null; then
  echo "generated TypeScript is marked @ts-nocheck: check uniffi.toml (strictTypeChecking)" >&2; exit 1
fi
