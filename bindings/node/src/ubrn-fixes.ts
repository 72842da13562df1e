/**
 * A fix to the uniffi-bindgen-react-native runtime (`@ubjs/core` 0.31.0-3), applied once
 * on import, before any call that needs it.
 *
 * `FfiConverterObjectWithCallbacks` (a trait object the app may implement in TypeScript,
 * like `UploadProgress`) lowers a TypeScript implementation into its handle map in
 * `lower`, but inherits `write` from `FfiConverterObject`, which only knows Rust-backed
 * objects and throws "Cannot lower this object to a pointer". `write` is what
 * `FfiConverterOptional` uses, so every `Option<Arc<dyn Trait>>` argument (`progress` of
 * `detect` and `vision`) failed when given a TypeScript object. The fix makes `write` go
 * through `lower`, as a plain (non-optional) argument already does; reading back was never
 * affected (`read` calls the overridden `lift`). Remove when `@ubjs/core` fixes it.
 */
import { FfiConverterObjectWithCallbacks, FfiConverterUInt64, type RustBuffer } from "@ubjs/core";

type Lowering = { lower(value: unknown, alloc: unknown): bigint };

const proto = FfiConverterObjectWithCallbacks.prototype as unknown as {
  write(value: unknown, into: RustBuffer): void;
};
proto.write = function (this: Lowering, value: unknown, into: RustBuffer): void {
  // The allocator argument is unused when lowering an object (a handle, not a buffer).
  FfiConverterUInt64.write(this.lower(value, undefined), into);
};
