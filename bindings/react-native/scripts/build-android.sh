#!/usr/bin/env bash
# Builds the Rust core for the Android ABIs of react-native-tether (static libraries the
# turbo-module's CMake links into libreact-native-tether.so), with the bindings:
#   android/src/main/jniLibs/{arm64-v8a,armeabi-v7a,x86,x86_64}/libtether.a   (release-small)
#   src/generated/*.ts, cpp/generated/*                                    (scripts/generate.sh)
#
#   bash scripts/build-android.sh          then `npm pack` (or publish) the package
#
# Needs: rustup, cargo-ndk (`cargo install cargo-ndk`), an Android NDK (ANDROID_NDK_HOME,
# or the NDK under ANDROID_HOME that cargo-ndk finds; React Native 0.88's ndkVersion).
# NOT RUN HERE: this machine has no NDK. What runs here is the host half: the same
# bindings, compiled and linked against the host library by check.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

command -v cargo-ndk >/dev/null || { echo "cargo-ndk not found: cargo install cargo-ndk" >&2; exit 1; }
rustup target add aarch64-linux-android armv7-linux-androideabi i686-linux-android x86_64-linux-android

# The static library per ABI of ubrn.config.yaml, built as scripts/build-lib builds it: the
# staticlib alone (with the `lib` crate type beside it LTO keeps every pub item), the
# shipping profile release-small (LTO, one codegen unit, size-optimised, unwinding kept:
# panics become JS errors), 16 KB pages as Android 15 needs. Then ubrn, told not to run
# cargo itself, copies each libtether.a into jniLibs/<abi>/.
for abi in arm64-v8a armeabi-v7a x86 x86_64; do
  (cd "$rn_crate" && CARGO_ENCODED_RUSTFLAGS="-Clink-arg=-Wl,-z,max-page-size=16384" \
    cargo ndk -t "$abi" --platform 24 -- rustc -p tether --lib --profile release-small --crate-type staticlib)
done
(cd "$rn_here" && rn_ubrn build android --config ubrn.config.yaml --profile release-small --no-cargo)
# The bindings come from the host's unstripped debug build (same API and checksums).
bash "$rn_here/scripts/generate.sh"
ls -l "$rn_here"/android/src/main/jniLibs/*/libtether.a
