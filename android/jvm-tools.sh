# Sourced by run-jvm-tests.sh and run-jvm-bench.sh: makes sure the JVM-side tools are
# there (installing what is missing on a fresh Debian 12 machine) and sets
#   K               the kotlin-compiler npm package (bin/kotlinc, lib/*.jar)
#   JNA_JAR         Debian's JNA (/usr/share/java/jna.jar; libjnidispatch alongside)
#   COROUTINES_JAR  kotlinx-coroutines-core-jvm.jar from kotlinc's lib/
#   STDLIB_JAR      kotlin-stdlib.jar from kotlinc's lib/
# Needs `root` (the repo) and `log` defined by the caller.
#   - libjna-java (apt), default-jre-headless if there is no java (17+ needed)
#   - kotlin-compiler@$KOTLIN_VERSION (npm) into <repo>/.tools/kotlinc (gitignored)
KOTLIN_VERSION=2.4.20
JNA_JAR=/usr/share/java/jna.jar

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
