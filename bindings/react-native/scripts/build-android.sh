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

# ubrn drives cargo-ndk with the targets, API level and jniLibs path of ubrn.config.yaml,
# then copies each libtether.a into jniLibs/<abi>/. The shipping profile: LTO, one
# codegen unit, size-optimised, unwinding kept (panics become JS errors).
(cd "$rn_here" && rn_ubrn build android --config ubrn.config.yaml --profile release-small)
# The bindings come from the host's unstripped debug build (same API and checksums).
bash "$rn_here/scripts/generate.sh"
ls -l "$rn_here"/android/src/main/jniLibs/*/libtether.a
