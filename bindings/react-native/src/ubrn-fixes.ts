/**
 * Fixes to the uniffi-bindgen-react-native runtime (`@ubjs/core` 0.31.0-3), the one copy
 * shared by the React Native package (src/index.tsx applies it first) and the Node test
 * of the TypeScript API (bindings/node/src/ubrn-fixes.ts applies it there). It takes the
 * runtime module as an argument instead of importing it: each package must patch the copy
 * of `@ubjs/core` that its generated code loads, and a bare import here would resolve to
 * this package's copy whoever imports it.
 *
 * The fix: `FfiConverterObjectWithCallbacks` (a trait object the app may implement in
 * TypeScript, like `UploadProgress`) lowers a TypeScript implementation into its handle
 * map in `lower`, but inherits `write` from `FfiConverterObject`, which only knows
 * Rust-backed objects and throws "Cannot lower this object to a pointer". `write` is what
 * `FfiConverterOptional` uses, so every `Option<Arc<dyn Trait>>` argument (`progress` of
 * `detect` and `vision`) failed when given a TypeScript object. The fix makes `write` go
 * through `lower`, as a plain (non-optional) argument already does; reading back was never
 * affected (`read` calls the overridden `lift`). Remove when `@ubjs/core` fixes it.
 */

/** The part of `@ubjs/core` the fix touches (structural, so no import is needed). */
export interface UbrnRuntime {
  FfiConverterObjectWithCallbacks: { prototype: object };
  FfiConverterUInt64: { write(value: bigint, into: never): void };
}

type Lowering = { lower(value: unknown, alloc: unknown): bigint };
type Patched = { write(value: unknown, into: never): void; [FIXED]?: true };
const FIXED = Symbol.for("tether.ubrn-fixes.optional-foreign-object");

/** Applies the fixes to `runtime` (idempotent). Call before the first call into Rust. */
export function applyUbrnFixes(runtime: UbrnRuntime): void {
  const proto = runtime.FfiConverterObjectWithCallbacks.prototype as Patched;
  if (proto[FIXED]) return;
  const u64 = runtime.FfiConverterUInt64;
  proto.write = function (this: Lowering, value: unknown, into: never): void {
    // The allocator argument is unused when lowering an object (a handle, not a buffer).
    u64.write(this.lower(value, undefined), into);
  };
  proto[FIXED] = true;
}
