#!/usr/bin/env bash
# Compiles the package's C++ with clang++ against the JSI and ReactCommon headers of the
# pinned react-native (node_modules/react-native, unpacked by check.sh) and ubrn's runtime
# headers, with the generated Android CMakeLists.txt's flags (C++17, -Wall -Werror
# -fexceptions -frtti), then links it with RN's jsi.cpp into one shared object against the
# host libtether.so with -Wl,--no-undefined: every symbol the C++ references must exist
# in the Rust library (a binding out of step with the library fails here).
#   cpp/generated/tether.cpp     the JSI bindings (ubrn generate jsi bindings)
#   cpp/react-native-tether.cpp  the turbo-module installer glue
# Not compiled: android/cpp-adapter.cpp (needs JNI and fbjni) and ios/Tether.mm (needs the
# iOS SDK and React's ObjC++ headers).
#
#   bash scripts/compile-cpp.sh <path to the host libtether.so>
#
# Objects are cached in .cache/cxx by a hash of their sources, headers, flags and compiler,
# so an unchanged binding is not recompiled; the link always runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$rn_here"
lib="$1"

CXX="${CXX:-clang++}"
RN=node_modules/react-native
UB=node_modules/uniffi-bindgen-react-native
flags=(-std=c++17 -fPIC -fexceptions -frtti -O0)
warn=(-Wall -Werror)
inc=(-I cpp -I cpp/generated -I "$UB/cpp/includes"
     -I "$RN/ReactCommon/jsi" -I "$RN/ReactCommon/callinvoker" -I "$RN/ReactCommon")
cache=.cache/cxx
mkdir -p "$cache"
compiler="$("$CXX" --version | head -1)"

# compile <source> <warnings on|off> <extra files that feed the hash...>
compile() {
  local src="$1" w="$2"; shift 2
  local key
  key="$( { echo "$compiler ${flags[*]} $w"; cat "$src" "$@"; } | sha256sum | cut -c1-24)"
  local obj="$cache/$(basename "$src" .cpp)-$key.o"
  if [ ! -f "$obj" ]; then
    local wflags=(); [ "$w" = on ] && wflags=("${warn[@]}")
    "$CXX" "${flags[@]}" "${wflags[@]}" "${inc[@]}" -c "$src" -o "$obj.tmp"
    mv "$obj.tmp" "$obj"
    echo "  compiled $src" >&2
  else
    echo "  unchanged $src (cached object)" >&2
  fi
  objs+=("$obj")
}

objs=()
ubrn_headers=("$UB"/cpp/includes/*.h)
compile cpp/generated/tether.cpp on cpp/generated/tether.hpp "${ubrn_headers[@]}"
compile cpp/react-native-tether.cpp on cpp/react-native-tether.h cpp/generated/tether.hpp
# React Native's own source: its warnings are not ours to fail on.
compile "$RN/ReactCommon/jsi/jsi/jsi.cpp" off "$RN/ReactCommon/jsi/jsi/jsi.h" "$RN/package.json"

out="$cache/libreact-native-tether-host.so"
"$CXX" -shared -o "$out" "${objs[@]}" -L "$(dirname "$lib")" -ltether -Wl,--no-undefined
# The installer the Android/iOS glue calls must be there, and the Rust calls it makes resolve
# to libtether.so (not left for the loader).
defined="$(nm -D --defined-only "$out")"
undefined="$(nm -D --undefined-only "$out")"
grep -q 'tether16installRustCrate' <<<"$defined" ||
  { echo "tether::installRustCrate missing from the linked object" >&2; exit 1; }
n="$(grep -c ' uniffi_tether_' <<<"$undefined" || true)"
[ "$n" -gt 100 ] || { echo "expected the bindings to call into libtether (found $n uniffi_tether_ symbols)" >&2; exit 1; }
# Keep the cache small: only the objects this run used.
for f in "$cache"/*.o; do printf '%s\n' "${objs[@]}" | grep -qxF "$f" || rm -f "$f"; done
echo "linked $(basename "$out"): $n Rust symbols resolved against $(basename "$lib")" >&2
