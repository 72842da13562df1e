#!/usr/bin/env bash
# Checks what `npm pack` puts in the react-native-tether tarball against the list of
# files an app needs, exactly: the TypeScript sources with the generated bindings, the
# C++ (turbo-module glue + generated JSI bindings), the Android library (Gradle, CMake,
# JNI adapter, Kotlin module and package, ProGuard rules, manifests), the iOS glue and
# the podspec. No tests, no example, no scripts, no node_modules, no caches.
#
# The native Rust libraries are build outputs of scripts/build-android.sh and
# scripts/build-ios.sh (not run here: no NDK, no Xcode). To check that `files` takes them
# too, a scratch copy of the package gets placeholders at the paths android/CMakeLists.txt
# and Tether.podspec read them from, and the same exact comparison runs on its tarball.
#
#   bash scripts/check-pack.sh      (after scripts/generate.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$rn_here"

expected_common=(
  package.json README.md Tether.podspec
  src/index.tsx src/native.tsx src/NativeTether.ts src/hooks.ts src/runtime-fixes.ts
  src/ubrn-fixes.ts src/hermes-globals.d.ts
  src/generated/tether.ts src/generated/tether-ffi.ts
  cpp/react-native-tether.h cpp/react-native-tether.cpp
  cpp/generated/tether.hpp cpp/generated/tether.cpp
  android/build.gradle android/CMakeLists.txt android/cpp-adapter.cpp android/proguard-rules.pro
  android/src/main/AndroidManifest.xml android/src/main/AndroidManifestNew.xml
  android/src/main/java/dev/tether/reactnative/TetherModule.kt
  android/src/main/java/dev/tether/reactnative/TetherPackage.kt
  ios/Tether.h ios/Tether.mm
)
abis=(arm64-v8a armeabi-v7a x86 x86_64)
natives=()
for abi in "${abis[@]}"; do natives+=("android/src/main/jniLibs/$abi/libtether.a"); done
natives+=(build/TetherRust.xcframework/Info.plist
  build/TetherRust.xcframework/ios-arm64/libtether.a
  build/TetherRust.xcframework/ios-arm64_x86_64-simulator/libtether.a)

# pack_list <dir> -> the sorted file list of the tarball npm would write
pack_list() {
  (cd "$1" && npm pack --dry-run --ignore-scripts --json 2>/dev/null) |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const f of JSON.parse(s)[0].files)console.log(f.path)})' | sort
}

compare() { # <label> <actual file> <expected file>
  if ! diff -u "$3" "$2" >&2; then
    echo "npm pack ($1): the tarball's files differ from the expected list (- expected, + packed)" >&2
    exit 1
  fi
}

want="$(mktemp)"; got="$(mktemp)"; scratch="$(mktemp -d)"
trap 'rm -rf "$want" "$got" "$scratch"' EXIT

# 1. The package as it is here (no native libraries built).
printf '%s\n' "${expected_common[@]}" | sort >"$want"
pack_list "$rn_here" >"$got"
compare "as built here" "$got" "$want"

# 2. A scratch copy with placeholder native libraries where the build files look for them.
grep -q 'src/main/jniLibs/${ANDROID_ABI}/libtether.a' android/CMakeLists.txt ||
  { echo "android/CMakeLists.txt no longer reads jniLibs/<abi>/libtether.a: update this check" >&2; exit 1; }
grep -q 's.vendored_frameworks = "build/TetherRust.xcframework"' Tether.podspec ||
  { echo "Tether.podspec no longer vendors build/TetherRust.xcframework: update this check" >&2; exit 1; }
# Everything but node_modules and the caches (a copy of what `git ls-files` + generate gives).
tar -C "$rn_here" --exclude=./node_modules --exclude=./.cache --exclude=./test/.napi -cf - . | tar -C "$scratch" -xf -
for f in "${natives[@]}"; do mkdir -p "$scratch/$(dirname "$f")" && echo placeholder >"$scratch/$f"; done
printf '%s\n' "${expected_common[@]}" "${natives[@]}" | sort >"$want"
pack_list "$scratch" >"$got"
compare "with native libraries" "$got" "$want"

# 3. The real tarball: it unpacks, and its package.json is this one.
tgz="$(cd "$scratch" && npm pack --ignore-scripts --silent 2>/dev/null | tail -1)"
size="$(stat -c %s "$scratch/$tgz")"
tar -xzf "$scratch/$tgz" -C "$scratch" package/package.json
cmp -s "$scratch/package/package.json" package.json || { echo "packed package.json differs" >&2; exit 1; }
echo "npm pack: ${#expected_common[@]} files (+ ${#natives[@]} native libraries when built); tarball without natives $(pack_list "$rn_here" | wc -l) files" >&2
echo "  (scratch tarball with placeholders: $size bytes)" >&2
