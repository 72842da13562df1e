#!/usr/bin/env bash
# Builds the Rust core for iOS as build/TetherRust.xcframework (static libtether.a for
# devices and the simulator, arm64 + x86_64), which Tether.podspec vendors, with the bindings
# (src/generated, cpp/generated: scripts/generate.sh).
#
#   bash scripts/build-ios.sh          then `npm pack` (or publish) the package; the app runs
#                                      `pod install`
#
# Needs macOS with Xcode (xcodebuild) and rustup.
# NOT RUN HERE: this machine has no Xcode. What runs here is the host half: the same
# bindings, compiled and linked against the host library by check.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ "$(uname -s)" = Darwin ] || { echo "build-ios.sh needs macOS with Xcode" >&2; exit 1; }
command -v xcodebuild >/dev/null || { echo "xcodebuild not found (install Xcode)" >&2; exit 1; }
rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
# React Native 0.88's minimum iOS version.
export IPHONEOS_DEPLOYMENT_TARGET="${IPHONEOS_DEPLOYMENT_TARGET:-15.1}"

# Each target of ubrn.config.yaml as scripts/build-lib builds it (the staticlib alone,
# release-small); then ubrn, told not to run cargo itself, lipo's the simulator slices and
# runs `xcodebuild -create-xcframework` into build/TetherRust.xcframework.
for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  "$rn_crate/scripts/build-lib" staticlib --target "$t" >/dev/null
done
(cd "$rn_here" && rn_ubrn build ios --config ubrn.config.yaml --profile release-small --no-cargo)
bash "$rn_here/scripts/generate.sh"
ls -d "$rn_here"/build/TetherRust.xcframework/*/
