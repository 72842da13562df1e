// The resolve hook registered by napi-loader.mjs: swaps the JSI API module for the N-API one.
const jsi = new URL("../src/generated/tether.ts", import.meta.url).href;
const napi = new URL("./.napi/tether.ts", import.meta.url).href;

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  return r.url === jsi ? { ...r, url: napi } : r;
}
