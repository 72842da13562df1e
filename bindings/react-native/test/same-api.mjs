// Checks that two ubrn-generated API modules (tether.ts of the JSI and of the N-API
// flavour) declare the same API: every exported declaration line and every member
// signature (a name, its parameters and a return type), in order. The flavours differ
// only in function bodies (native symbol names, string decoding), which this skips.
// Exits 1 with the first differences otherwise.
//
//   node test/same-api.mjs <jsi tether.ts> <napi tether.ts>
import { readFileSync } from "node:fs";

const exported = /^export\s/;
const member =
  /^\s+(static\s+|async\s+|readonly\s+|public\s+|private\s+|protected\s+|get\s+|set\s+)*[A-Za-z_$][\w$]*\??(<[^>]*>)?\(.*\)\s*(\/\*throws\*\/\s*)?:\s*\S.*$/;
function api(path) {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => (exported.test(l) || member.test(l)) && !l.includes("nativeModule("))
    .map((l) => l.trim());
}
const [a, b] = process.argv.slice(2).map(api);
const diff = [];
for (let i = 0; i < Math.max(a.length, b.length); i++) {
  if (a[i] !== b[i]) diff.push(`  #${i}\n    jsi:  ${a[i]}\n    napi: ${b[i]}`);
}
if (a.length < 200 || diff.length > 0) {
  console.error(`the JSI and N-API API modules differ (${a.length} / ${b.length} declarations):\n${diff.slice(0, 10).join("\n")}`);
  process.exit(1);
}
console.error(`same API in both flavours: ${a.length} declarations`);
