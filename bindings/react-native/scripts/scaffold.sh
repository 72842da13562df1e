#!/usr/bin/env bash
# The turbo-module scaffold that ubrn writes around the bindings (committed: a template
# filled in from package.json and ubrn.config.yaml, it changes only when they or ubrn do):
#   Tether.podspec, android/{build.gradle,CMakeLists.txt,cpp-adapter.cpp,src/main/...},
#   ios/Tether.{h,mm}, cpp/react-native-tether.{h,cpp}, src/NativeTether.ts, src/native.tsx
#
#   bash scripts/scaffold.sh           rewrite them in place (after a ubrn upgrade, or an
#                                      edit of package.json / ubrn.config.yaml)
#   bash scripts/scaffold.sh --check   regenerate into a scratch copy and fail if any
#                                      committed file differs (check.sh runs this)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

files=(
  Tether.podspec
  android/build.gradle android/CMakeLists.txt android/cpp-adapter.cpp
  android/src/main/AndroidManifest.xml
  android/src/main/java/dev/tether/reactnative/TetherModule.kt
  android/src/main/java/dev/tether/reactnative/TetherPackage.kt
  ios/Tether.h ios/Tether.mm
  cpp/react-native-tether.h cpp/react-native-tether.cpp
  src/NativeTether.ts src/native.tsx
)

if [ "${1:-}" != --check ]; then
  (cd "$rn_here" && rn_ubrn generate jsi turbo-module --config ubrn.config.yaml tether)
  exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp "$rn_here/package.json" "$scratch/"
# The Rust workspace path is relative: make it absolute for the scratch copy.
sed "s|^  directory: \.\./\.\.$|  directory: $rn_crate|; s|uniffiToml: \.\./\.\./uniffi.toml|uniffiToml: $rn_crate/uniffi.toml|" \
  "$rn_here/ubrn.config.yaml" >"$scratch/ubrn.config.yaml"
(cd "$scratch" && rn_ubrn generate jsi turbo-module --config ubrn.config.yaml tether) >/dev/null
stale=0
for f in "${files[@]}"; do
  if ! cmp -s "$scratch/$f" "$rn_here/$f"; then
    echo "stale or edited: $f (bash scripts/scaffold.sh rewrites it)" >&2
    diff -u "$rn_here/$f" "$scratch/$f" | head -20 >&2 || true
    stale=1
  fi
done
# Anything ubrn writes that is not in the list above (a new template) must be committed too.
extra="$(cd "$scratch" && find . -type f ! -name package.json ! -name ubrn.config.yaml | sed 's|^\./||' | sort)"
for f in $extra; do
  printf '%s\n' "${files[@]}" | grep -qx "$f" || { echo "ubrn now also writes $f: add it to scripts/scaffold.sh" >&2; stale=1; }
done
[ $stale = 0 ] || exit 1
echo "scaffold up to date (${#files[@]} files)" >&2
