#!/usr/bin/env bash
# Builds what ios/Package.swift packages (on a Mac with Xcode and rustup):
#   TetherFFI.xcframework/     static libtether.a for iOS device, iOS simulator (arm64 + x86_64)
#                              and macOS (arm64 + x86_64), with TetherFFI.h + module.modulemap
#   Sources/Tether/Tether.swift  the generated Swift bindings
#
#   ios/build-xcframework.sh              (from anywhere)
#   ios/build-xcframework.sh --no-macos   (skip the macOS slice; `swift test` then cannot run)
#
# NOT RUN HERE: this machine has no Xcode/Swift toolchain. The header it packages was
# checked with ios/check-header.sh (clang -fsyntax-only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

PROFILE=release-small
macos=1; [ "${1:-}" = --no-macos ] && macos=0

[ "$(uname -s)" = Darwin ] || { echo "build-xcframework.sh needs macOS with Xcode" >&2; exit 1; }
command -v xcodebuild >/dev/null || { echo "xcodebuild not found (install Xcode)" >&2; exit 1; }

# Keep in step with `platforms` in Package.swift.
export IPHONEOS_DEPLOYMENT_TARGET=15.0
export MACOSX_DEPLOYMENT_TARGET=12.0

ios_targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
mac_targets=(aarch64-apple-darwin x86_64-apple-darwin)
targets=("${ios_targets[@]}"); [ $macos = 1 ] && targets+=("${mac_targets[@]}")

# 1. The Rust core as a static library per target (scripts/build-lib: the staticlib alone,
#    so LTO may drop what the app never reaches).
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  echo "== scripts/build-lib staticlib --target $t" >&2
  scripts/build-lib staticlib --target "$t" >/dev/null
done
lib() { echo "target/$1/$PROFILE/libtether.a"; }

# 2. Bindings: Tether.swift, TetherFFI.h, TetherFFI.modulemap (from the host's unstripped
#    debug build; the API and checksums are the same as the iOS builds').
bindings/generate.sh debug
gen="$here/build/generated"
rm -rf "$gen" && mkdir -p "$gen" && cp bindings/out/swift/* "$gen/"

# 3. Headers dir for the xcframework: the header + the modulemap, which must be named
#    module.modulemap there for Xcode/SwiftPM to find the TetherFFI module.
headers="$here/build/headers"
rm -rf "$headers" && mkdir -p "$headers"
cp "$gen/TetherFFI.h" "$headers/"
cp "$gen/TetherFFI.modulemap" "$headers/module.modulemap"

# 4. One fat library per platform variant (simulator: arm64 + x86_64; macOS likewise).
mkdir -p "$here/build/ios-simulator" "$here/build/macos"
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" \
  -output "$here/build/ios-simulator/libtether.a"
args=(-library "$(lib aarch64-apple-ios)" -headers "$headers"
      -library "$here/build/ios-simulator/libtether.a" -headers "$headers")
if [ $macos = 1 ]; then
  lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" \
    -output "$here/build/macos/libtether.a"
  args+=(-library "$here/build/macos/libtether.a" -headers "$headers")
fi

# 5. The xcframework.
rm -rf "$here/TetherFFI.xcframework"
xcodebuild -create-xcframework "${args[@]}" -output "$here/TetherFFI.xcframework"

# 6. The Swift bindings into the package's Swift target.
cp "$gen/Tether.swift" "$here/Sources/Tether/Tether.swift"

echo "built $here/TetherFFI.xcframework and Sources/Tether/Tether.swift" >&2
echo "next: (cd ios && swift test)   # runs Tests/TetherTests on macOS against target/debug/tether serve" >&2
