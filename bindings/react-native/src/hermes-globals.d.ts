/**
 * Globals Hermes provides (React Native 0.74+) that react-native's own type declarations
 * leave out, and that the generated bindings use: `TextEncoder` always, `TextDecoder`
 * when present (the bindings check `typeof TextDecoder` and fall back to a native helper).
 * Referenced from index.tsx so an app's type check of this package sees them too. An app
 * whose tsconfig includes the `dom` lib has them already (drop this reference if they clash).
 */
export {};

declare global {
  interface TextEncoder {
    encode(input?: string): Uint8Array;
    encodeInto(source: string, destination: Uint8Array): { read: number; written: number };
  }
  var TextEncoder: { prototype: TextEncoder; new (): TextEncoder };
  interface TextDecoder {
    decode(input?: ArrayBufferView | ArrayBuffer): string;
  }
  var TextDecoder: { prototype: TextDecoder; new (label?: string): TextDecoder } | undefined;
}
