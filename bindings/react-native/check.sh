#!/usr/bin/env bash
# The react-native-tether checks that can run without a phone, NDK or Xcode (run by
# scripts/test). See README.md, "What was run here".
#
#   bash bindings/react-native/check.sh      (from anywhere; needs node 20+, npm, cargo)
#
# 0. npm ci (only if node_modules is missing; legacy peer deps: see .npmrc), clang++ (apt
#    if missing), and react-native@0.88.1's own tarball, integrity-checked, unpacked into
#    node_modules/react-native (its headers and types; not its ~200 JS dependencies).
# 1. scripts/generate.sh: host debug build + ubrn JSI bindings (gitignored), then the
#    committed turbo-module scaffold is regenerated in a scratch copy and compared: stale
#    scaffold files fail the check.
# 2. tsc --noEmit, strict: generated TS, index.tsx, hooks, the example screen, against
#    react-native 0.88.1's and React 19's types.
# 3. clang++ (-std=c++17 -Wall -Werror): the generated JSI bindings and the turbo-module
#    glue (cpp/*.cpp) with RN 0.88.1's jsi.cpp, linked into a shared object against the
#    host libtether.so with -Wl,--no-undefined (every referenced symbol resolves).
# 4. The hooks on Node: the N-API flavour of the same API (generated into
#    test/.napi, gitignored) stands in for the JSI one, react-test-renderer renders them
#    against the real core and `tether serve`.
# 5. npm pack: the tarball's file list is exactly what an app needs.
set -euo pipefail
source "$(dirname "$0")/scripts/lib.sh"
cd "$rn_here"
t0=$SECONDS
timing=()
lap() { timing+=("$1 $((SECONDS - ${2}))s"); }

RN_VERSION=0.88.1
RN_INTEGRITY="sha512-wajWcLZ93GCN7k4Uwh4CS4L2Ah8ohcvkOXnvIYmh4Yvuqho5j3APZ9qozK+nQrHWSgauq4h8D3HN5DKK84SrHA=="

# --- 0. tools --------------------------------------------------------------------------
t=$SECONDS
if [ ! -d node_modules ]; then
  phase "npm ci"
  npm ci --no-audit --no-fund
fi
if [ "$(node -p 'try{require("./node_modules/react-native/package.json").version}catch{""}')" != "$RN_VERSION" ]; then
  phase "react-native@$RN_VERSION: headers and types only (npm pack, integrity-checked)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack "react-native@$RN_VERSION" --silent >/dev/null)
  tgz="$tmp/react-native-$RN_VERSION.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  [ "$got" = "$RN_INTEGRITY" ] || { echo "react-native tarball integrity mismatch: $got" >&2; exit 1; }
  rm -rf node_modules/react-native && mkdir -p node_modules/react-native
  tar -xzf "$tgz" -C node_modules/react-native --strip-components=1
  rm -rf "$tmp"
fi
if ! command -v clang++ >/dev/null; then
  phase "apt-get install clang"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q clang >/dev/null; else sudo apt-get install -y -q clang >/dev/null; fi
fi
lap tools $t

# --- 1. generate -----------------------------------------------------------------------
t=$SECONDS
bash scripts/generate.sh
target="$(rn_target_dir)"
lib="$target/debug/libtether.so"
server="$target/debug/tether"   # the test server (tether-cli, built by generate.sh)
phase "turbo-module scaffold: regenerate in a scratch copy, compare with the committed files"
bash scripts/scaffold.sh --check
lap generate $t

# --- 2. types --------------------------------------------------------------------------
t=$SECONDS
phase "tsc --noEmit (strict): generated API, index.tsx, hooks, example screen, test"
npx --no-install tsc -p tsconfig.json
# The hooks test, with Node's and the DOM's globals instead of Hermes's.
npx --no-install tsc -p test/tsconfig.json
lap tsc $t

# --- 3. C++ ----------------------------------------------------------------------------
t=$SECONDS
phase "clang++: JSI bindings + turbo-module glue vs RN $RN_VERSION headers, linked with --no-undefined"
bash scripts/compile-cpp.sh "$lib"
lap c++ $t

# --- 4. hooks on Node -------------------------------------------------------------------
t=$SECONDS
phase "ubrn generate napi bindings -> test/.napi (the Node stand-in for the JSI FFI)"
rm -rf test/.napi
(cd "$rn_crate" && rn_ubrn generate napi bindings --library --lib-absolute --no-format \
  --ts-dir "$rn_here/test/.napi" "$lib")
# The hooks import the API module; on Node the N-API one stands in for the JSI one. That
# holds only while both declare the same API: compare every exported declaration line.
node test/same-api.mjs src/generated/tether.ts test/.napi/tether.ts
phase "hooks under react-test-renderer against the real core and tether serve"
node --import tsx --import ./test/napi-loader.mjs test/hooks.test.tsx "$server"
lap hooks $t

# --- 5. pack ---------------------------------------------------------------------------
t=$SECONDS
phase "npm pack: the file list"
bash scripts/check-pack.sh
lap pack $t

phase "react-native checks passed in $((SECONDS - t0)) s (${timing[*]})"
