# Shared by the react-native-tether scripts (sourced): paths, the ubrn CLI, the host build.
# Not a script of its own.

rn_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rn_crate="$(cd "$rn_here/../.." && pwd)"
phase() { printf '==> %s\n' "$*" >&2; }

# The ubrn CLI. Its first call compiles ubrn's own Rust CLI (2-3 min, ~1.5 GB): reuse the
# copy bindings/node already installed and built (same pinned version, 0.31.0-3) rather
# than building a second one inside this package's node_modules. UBRN overrides it.
rn_ubrn() {
  local cli="${UBRN_CLI:-$rn_crate/bindings/node/node_modules/uniffi-bindgen-react-native/bin/cli.cjs}"
  if [ ! -f "$cli" ]; then
    phase "npm ci in bindings/node (it holds the ubrn CLI this package reuses)"
    (cd "$rn_crate/bindings/node" && npm ci --no-audit --no-fund)
  fi
  node "$cli" "$@"
}

# The cargo target directory (honours CARGO_TARGET_DIR and workspace settings).
rn_target_dir() {
  (cd "$rn_crate" && cargo metadata --format-version 1 --no-deps |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
}
