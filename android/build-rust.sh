#!/usr/bin/env bash
# Builds what the Gradle module (android/build.gradle.kts) packages:
#   src/main/jniLibs/{arm64-v8a,armeabi-v7a,x86_64}/libtether.so   (cargo-ndk, release-small)
#   src/main/uniffi/dev/tether/tether.kt                          (bindings/generate.sh)
#
#   android/build-rust.sh            (from anywhere)
#
# Needs: rustup, cargo-ndk (`cargo install cargo-ndk`), an Android NDK (ANDROID_NDK_HOME,
# or the NDK under ANDROID_HOME / ANDROID_SDK_ROOT that cargo-ndk finds itself).
# NOT RUN HERE: this machine has no NDK. The Kotlin half (generate) is the same
# code path android/run-jvm-tests.sh runs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

command -v cargo-ndk >/dev/null || { echo "cargo-ndk not found: cargo install cargo-ndk" >&2; exit 1; }
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android

# 1. The Rust core for each ABI, copied by cargo-ndk into jniLibs/<abi>/libtether.so.
jni="$here/src/main/jniLibs"
rm -rf "$jni"
# (cargo-ndk's default API level, 21, is below the module's minSdk 24: the .so loads on every
# device the module supports.) The same build as scripts/build-lib's: the cdylib alone (not
# with the `lib` crate type, which keeps every pub item alive), release-small; the link
# flags for Android (packed relocations, identical-code folding) are in .cargo/config.toml.
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -o "$jni" \
  rustc -p tether --lib --profile release-small --crate-type cdylib

# 2. The Kotlin bindings. Generated from the host's unstripped debug library (UniFFI reads
#    the metadata embedded in it; the API and checksums are the same as the Android builds').
bindings/generate.sh debug
gen="$here/src/main/uniffi"
rm -rf "$gen" && mkdir -p "$gen"
cp -r bindings/out/kotlin/. "$gen/"

ls -l "$jni"/*/libtether.so "$gen/dev/tether/tether.kt"
