#!/usr/bin/env bash
# Runs the Kotlin binding scenario (android/src/jvmTest/kotlin/.../ScenarioTest.kt) on a
# plain JVM against the real libtether.so and a real `tether serve` contract server.
# No Android SDK, NDK or Gradle is involved (there are none here): this checks the
# generated Kotlin API + JNA + kotlinx-coroutines + the Rust core end to end on the host.
#
#   bash android/run-jvm-tests.sh          (from anywhere; exit code 0 = all passed)
#
# On a fresh Debian 12 machine it installs what it needs if missing:
#   - libjna-java (apt; /usr/share/java/jna.jar + libjnidispatch), default-jre-headless if
#     there is no java (17+ needed)
#   - kotlin-compiler@2.4.20 (npm) into <repo>/.tools/kotlinc (gitignored); its lib/ has
#     kotlin-stdlib.jar and kotlinx-coroutines-core-jvm.jar
# Build output goes to android/build/ (gitignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

out="$here/build/jvm"
log() { echo "[run-jvm-tests] $*" >&2; }

# --- 1. tools (jvm-tools.sh: JNA, a JRE, kotlinc; sets K, JNA_JAR, *_JAR) --------------
# shellcheck source=jvm-tools.sh
source "$here/jvm-tools.sh"

# --- 2. the cdylib, the bindings and the contract server ------------------------------
log "building libtether.so + bindings (bindings/generate.sh) and the tether CLI"
bindings/generate.sh debug
cargo build -q -p tether-cli
gen="$here/build/generated/kotlin"
rm -rf "$gen" && mkdir -p "$gen"
target/debug/uniffi-bindgen generate --library target/debug/libtether.so --language kotlin \
  --no-format --out-dir "$gen" >/dev/null

# --- 3. compile ----------------------------------------------------------------------
log "compiling the generated Kotlin + the idioms (src/main/kotlin) + ScenarioTest.kt (kotlinc $KOTLIN_VERSION)"
mkdir -p "$out"
jar="$out/scenario.jar"
"$K/bin/kotlinc" -nowarn -cp "$JNA_JAR:$COROUTINES_JAR" \
  "$gen/dev/tether/tether.kt" "$here"/src/main/kotlin/dev/tether/*.kt \
  "$here"/src/jvmTest/kotlin/dev/tether/jvmtest/*.kt -d "$jar"

# --- 4. run --------------------------------------------------------------------------
log "running the scenario on $(java -version 2>&1 | head -1)"
exec java -Djna.library.path="$root/target/debug" \
  -cp "$jar:$JNA_JAR:$COROUTINES_JAR:$STDLIB_JAR" \
  dev.tether.jvmtest.ScenarioTestKt "$root/target/debug/tether"
