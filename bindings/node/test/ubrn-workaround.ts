/*
 * Works around a bug in the @ubjs/core@0.31.0-3 runtime (also present in ubrn's newer
 * Cursor-based runtime): FfiConverterObjectWithCallbacks overrides `lower` so that a
 * TypeScript object implementing a foreign trait goes into the handle map, but the
 * inherited `write` (used when the object sits inside an Option, a record or a list)
 * calls FfiConverterObject's `lowerHandle`, which accepts only Rust-backed objects and
 * throws "Cannot lower this object to a pointer".
 *
 * Tether's `TetherClient(config, tokenStore, logger?)` takes `Option<Arc<dyn Logger>>`,
 * so without this a TypeScript Logger cannot be passed at all. The patch makes
 * `lowerHandle` do what `lower` does. Import this module before creating any client.
 */
import { FfiConverterObjectWithCallbacks } from "@ubjs/core";

type Internals = {
  factory: { isConcreteType(value: unknown): boolean; clonePointer(value: unknown): bigint };
  handleMap: { insert(value: unknown): bigint };
  lowerHandle(value: unknown): bigint;
};

const proto = FfiConverterObjectWithCallbacks.prototype as unknown as Internals;
proto.lowerHandle = function (this: Internals, value: unknown): bigint {
  return this.factory.isConcreteType(value) ? this.factory.clonePointer(value) : this.handleMap.insert(value);
};
