#!/usr/bin/env bash
# Generates the Python bindings, puts them beside the real cdylib in a package dir, and
# runs the scenario test against the `tether serve` contract server.
set -euo pipefail
cd "$(dirname "$0")/../.."
bindings/generate.sh
cargo build -q -p tether-cli
pkg=bindings/python/tether
rm -rf "$pkg" && mkdir -p "$pkg"
cp bindings/out/python/tether.py target/debug/libtether.so "$pkg/"
python3 bindings/python/test_tether.py target/debug/tether
