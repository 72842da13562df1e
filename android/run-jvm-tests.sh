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

KOTLIN_VERSION=2.4.20
JNA_JAR=/usr/share/java/jna.jar
out="$here/build/jvm"
log() { echo "[run-jvm-tests] $*" >&2; }

# --- 1. tools ------------------------------------------------------------------------
need_apt=()
[ -f "$JNA_JAR" ] || need_apt+=(libjna-java)
command -v java >/dev/null || need_apt+=(default-jre-headless)   # kotlinc needs only a JRE
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} (apt)"
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  if ! "${sudo[@]}" apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" apt-get install -y -q "${need_apt[@]}" >/dev/null
  fi
fi
java_major=$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1)
[ "${java_major:-0}" -ge 17 ] || { log "need Java 17+, found: $(java -version 2>&1 | head -1)"; exit 1; }

K="$root/.tools/kotlinc/node_modules/kotlin-compiler"
if [ ! -x "$K/bin/kotlinc" ] || ! grep -q "\"version\": \"$KOTLIN_VERSION\"" "$K/package.json" 2>/dev/null; then
  log "installing kotlin-compiler@$KOTLIN_VERSION (npm) into .tools/kotlinc"
  mkdir -p "$root/.tools/kotlinc"
  (cd "$root/.tools/kotlinc" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --no-audit --no-fund --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null)
fi
COROUTINES_JAR="$K/lib/kotlinx-coroutines-core-jvm.jar"
STDLIB_JAR="$K/lib/kotlin-stdlib.jar"
[ -f "$COROUTINES_JAR" ] && [ -f "$STDLIB_JAR" ] || { log "kotlin-compiler lib/ lacks coroutines/stdlib jars"; exit 1; }

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
