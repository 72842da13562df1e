// Node module hook for the hooks test (node --import tsx --import ./test/napi-loader.mjs):
// the package's API module src/generated/tether.ts (JSI flavour: its FFI layer needs the
// turbo-module installed in Hermes) resolves to test/.napi/tether.ts, the same API that
// ubrn generates over N-API. same-api.mjs checks the two declare the same API.
import { register } from "node:module";

if (!globalThis.__tetherNapiLoader) {
  globalThis.__tetherNapiLoader = true;
  register("./napi-loader-hooks.mjs", import.meta.url);
}
