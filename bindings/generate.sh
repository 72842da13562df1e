#!/usr/bin/env bash
# Generates the Kotlin, Swift and Python bindings from the built, UNSTRIPPED cdylib
# (library mode: UniFFI reads the metadata embedded in the library; a stripped library
# makes uniffi-bindgen exit 0 and write nothing, so we check for that).
#
#   bindings/generate.sh [debug|release] [OUT_DIR]   -> OUT_DIR/{kotlin,swift,python}
#                                                       (default OUT_DIR: bindings/out)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-debug}"
flag=(); [ "$profile" = release ] && flag=(--release)
cargo build -q -p tether "${flag[@]}"
cargo build -q -p uniffi-bindgen
lib="target/$profile/libtether.so"
[ -f "$lib" ] || lib="target/$profile/libtether.dylib"
out="${2:-bindings/out}"
rm -rf "$out"
for lang in kotlin swift python; do
  target/debug/uniffi-bindgen generate --library "$lib" --language "$lang" --no-format --out-dir "$out/$lang" >/dev/null
done
test -s "$out/kotlin/dev/tether/tether.kt"
test -s "$out/swift/Tether.swift" && test -s "$out/swift/TetherFFI.h"
test -s "$out/python/tether.py"
echo "bindings written to $out (from $lib)" >&2
