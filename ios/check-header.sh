#!/usr/bin/env bash
# The one iOS-side check that runs on Linux: the generated C header TetherFFI.h (what
# the xcframework ships and Swift imports as module TetherFFI) parses as C with clang,
# and declares the functions the generated Tether.swift calls.
#
#   bash ios/check-header.sh        (installs clang with apt-get if missing)
#
# It does not compile any Swift (there is no Swift toolchain here).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

if ! command -v clang >/dev/null; then
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  echo "[check-header] installing clang (apt)" >&2
  "${sudo[@]}" apt-get install -y -q clang >/dev/null 2>&1 ||
    { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q clang >/dev/null; }
fi

bindings/generate.sh debug
gen="$here/build/generated"
rm -rf "$gen" && mkdir -p "$gen"
# bindings/out is rewritten by every generate.sh run: copy at once, regenerate if raced.
if ! cp bindings/out/swift/* "$gen/" 2>/dev/null || [ ! -s "$gen/TetherFFI.h" ] || [ ! -s "$gen/Tether.swift" ]; then
  target/debug/uniffi-bindgen generate --library target/debug/libtether.so --language swift \
    --no-format --out-dir "$gen" >/dev/null
fi
h="$gen/TetherFFI.h"

fail=0
if clang -fsyntax-only -x c "$h"; then
  echo "ok    clang -fsyntax-only -x c TetherFFI.h"
else
  echo "FAIL  clang -fsyntax-only -x c TetherFFI.h"; fail=1
fi
# Stricter: included from a translation unit (as a real consumer does; `#pragma once` in a
# main file is itself a warning), all warnings as errors, three C standards.
tu="$gen/include-check.c"
printf '#include "TetherFFI.h"\n#include "TetherFFI.h"\nint main(void) { return 0; }\n' > "$tu"
for std in c99 c11 c17; do
  if clang -fsyntax-only -Wall -Wextra -Werror -std=$std -I "$gen" "$tu"; then
    echo "ok    clang -fsyntax-only -Wall -Wextra -Werror -std=$std (header included twice)"
  else
    echo "FAIL  clang -fsyntax-only -Wall -Wextra -Werror -std=$std"; fail=1
  fi
done

# Every uniffi_/ffi_ symbol Tether.swift calls is declared in the header.
missing=$(comm -23 \
  <(grep -oE '\b(uniffi|ffi)_tether_[A-Za-z0-9_]+' "$gen/Tether.swift" | sort -u) \
  <(grep -oE '\b(uniffi|ffi)_tether_[A-Za-z0-9_]+' "$h" | sort -u))
if [ -z "$missing" ]; then
  n=$(grep -oE '\b(uniffi|ffi)_tether_[A-Za-z0-9_]+' "$gen/Tether.swift" | sort -u | wc -l)
  echo "ok    all $n FFI symbols used by Tether.swift are declared in TetherFFI.h"
else
  echo "FAIL  used by Tether.swift but not declared in TetherFFI.h: $missing"; fail=1
fi

# ...and exported by the library (the host's libtether.so: same Rust, same symbols).
if command -v nm >/dev/null; then
  unexported=$(comm -23 \
    <(grep -oE '\b(uniffi|ffi)_tether_[A-Za-z0-9_]+' "$gen/Tether.swift" | sort -u) \
    <(nm -D --defined-only target/debug/libtether.so | awk '{print $3}' | sort -u))
  if [ -z "$unexported" ]; then
    echo "ok    all of them are exported by target/debug/libtether.so"
  else
    echo "FAIL  not exported by libtether.so: $unexported"; fail=1
  fi
fi

# The modulemap names the module Package.swift / Tether.swift import.
if grep -q '^module TetherFFI {' "$gen/TetherFFI.modulemap" && grep -q 'import TetherFFI' "$gen/Tether.swift"; then
  echo "ok    TetherFFI.modulemap declares module TetherFFI, imported by Tether.swift"
else
  echo "FAIL  module name mismatch between TetherFFI.modulemap and Tether.swift"; fail=1
fi
# The hand-written Swift (Sources/Tether/*.swift) calls and implements generated API by
# name: each signature it relies on must be in this Tether.swift (no compiler here, so a
# renamed method or argument label would otherwise go unnoticed until a Mac build).
relied=(
  'func sendMessage(conversationId: String, text: String, options: ChatOptions?, listener: ChatListener, cancel: CancelHandle?) async throws  -> Message'
  'func addAuthListener(listener: AuthListener)  -> Subscription'
  'func addQuotaListener(listener: QuotaListener)  -> Subscription'
  'func onDelta(messageId: String, text: String)'
  'func onComplete(message: Message)'
  'func onError(messageId: String, error: TetherError)'
  'func onStateChanged(state: AuthState)'
  'func onSessionRefreshed(userId: String)'
  'func onQuotaChanged(state: QuotaState)'
  'func onPaywall(planRequired: String, state: QuotaState)'
  'func cancel()'
)
absent=0
for sig in "${relied[@]}"; do
  grep -qF "$sig" "$gen/Tether.swift" || { echo "FAIL  Tether.swift has no: $sig"; absent=1; fail=1; }
done
[ $absent = 0 ] && echo "ok    the ${#relied[@]} generated signatures Tether+Concurrency.swift relies on exist"
exit $fail
