// Type declarations for two runtime exports of @ubjs/node@0.31.0-3 that its published
// typings omit. The package's "main" (lib.js) exports `resolveLibPath`,
// `ResolveLibPathError` and `FfiType` next to the napi-rs classes, but its "types"
// (index.d.ts) only describes the napi-rs classes, so the generated `tether-ffi.ts`
// does not type-check without this. The shapes below mirror lib.js exactly.
import type {
  resolveLibPath as ResolveLibPath,
  ResolveLibPathError as ResolveLibPathErrorClass,
} from "@ubjs/node/typescript/dist/resolve-lib.js";

type FfiTypeDescriptor =
  | { readonly tag: string }
  | { readonly tag: "Callback" | "Struct"; readonly name: string }
  | { readonly tag: "Reference" | "MutReference"; readonly inner: FfiTypeDescriptor };

declare module "@ubjs/node" {
  export const resolveLibPath: typeof ResolveLibPath;
  export const ResolveLibPathError: typeof ResolveLibPathErrorClass;
  export const FfiType: {
    readonly UInt8: FfiTypeDescriptor;
    readonly Int8: FfiTypeDescriptor;
    readonly UInt16: FfiTypeDescriptor;
    readonly Int16: FfiTypeDescriptor;
    readonly UInt32: FfiTypeDescriptor;
    readonly Int32: FfiTypeDescriptor;
    readonly UInt64: FfiTypeDescriptor;
    readonly Int64: FfiTypeDescriptor;
    readonly Float32: FfiTypeDescriptor;
    readonly Float64: FfiTypeDescriptor;
    readonly Handle: FfiTypeDescriptor;
    readonly RustBuffer: FfiTypeDescriptor;
    readonly ForeignBytes: FfiTypeDescriptor;
    readonly RustCallStatus: FfiTypeDescriptor;
    readonly VoidPointer: FfiTypeDescriptor;
    readonly Void: FfiTypeDescriptor;
    Callback(name: string): FfiTypeDescriptor;
    Struct(name: string): FfiTypeDescriptor;
    Reference(inner: FfiTypeDescriptor): FfiTypeDescriptor;
    MutReference(inner: FfiTypeDescriptor): FfiTypeDescriptor;
  };
}
