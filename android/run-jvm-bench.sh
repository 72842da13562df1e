#!/usr/bin/env bash
# The Kotlin part of `scripts/bench ffi`: compiles the generated Kotlin, the idioms
# (src/main/kotlin) and src/jvmBench/kotlin/.../FfiBench.kt with kotlinc, and runs it on a
# desktop JVM over JNA against the RELEASE libtether.so, a release `tether serve` and
# `tether-bench-chat ffi-stream` (the Rust-only side of the stream figures). The figures
# are described at the top of FfiBench.kt; `bench ffi/...` lines go to stdout.
#
#   bash android/run-jvm-bench.sh        (from anywhere; tools as for run-jvm-tests.sh)
#
# The release artifacts are copied into android/build/bench/ before use, so that another
# build in the same target dir cannot swap the library under the generated code.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
log() { echo "[run-jvm-bench] $*" >&2; }

# shellcheck source=jvm-tools.sh
source "$here/jvm-tools.sh"

log "building the release libtether.so, tether and tether-bench-chat"
cargo build -q --release -p tether
cargo build -q --release -p tether-cli --bin tether --bin tether-bench-chat
cargo build -q -p uniffi-bindgen
target="$(cargo metadata --format-version 1 --no-deps | sed -nE 's/.*"target_directory":"([^"]+)".*/\1/p')"
[ -n "$target" ] || { log "cannot find cargo's target directory"; exit 1; }
bin="$here/build/bench"
rm -rf "$bin" && mkdir -p "$bin/lib" "$bin/gen"
cp "$target/release/libtether.so" "$bin/lib/"
cp "$target/release/tether" "$target/release/tether-bench-chat" "$bin/"
"$target/debug/uniffi-bindgen" generate --library "$bin/lib/libtether.so" --language kotlin \
  --no-format --out-dir "$bin/gen" >/dev/null
test -s "$bin/gen/dev/tether/tether.kt"

log "compiling the generated Kotlin + the idioms + FfiBench.kt (kotlinc $KOTLIN_VERSION)"
jar="$bin/ffi-bench.jar"
"$K/bin/kotlinc" -nowarn -cp "$JNA_JAR:$COROUTINES_JAR" \
  "$bin/gen/dev/tether/tether.kt" "$here"/src/main/kotlin/dev/tether/*.kt \
  "$here"/src/jvmBench/kotlin/dev/tether/jvmbench/*.kt -d "$jar"

log "running on $(java -version 2>&1 | head -1)"
exec java -Djna.library.path="$bin/lib" -cp "$jar:$JNA_JAR:$COROUTINES_JAR:$STDLIB_JAR" \
  dev.tether.jvmbench.FfiBenchKt "$bin/tether" "$bin/tether-bench-chat"
