#!/usr/bin/env node
// Runs a Worker on wrangler's local dev server (the same Miniflare + workerd as
// `wrangler dev`, through wrangler's own startWorker API) WITHOUT a devtools session.
//
//   node worker/scripts/serve.mjs --config wrangler.local.jsonc --port 8787 [--var NAME:VALUE ...]
//        [--secret-from-env NAME ...]   (a secret binding from this process's environment,
//                                        so its value is neither in argv nor printed)
//
// Why: the `wrangler dev` command always attaches its devtools inspector to the runtime,
// and then every console.log is captured with a stack trace, serialised to the devtools
// protocol and sent to another process: measured at ~0.07 ms of runtime CPU per call,
// a third of a whole bare request. Production has no devtools session; its logs are
// collected from the runtime's output. Here each console.log line goes to stdout, as a
// log collector would read it. `worker/scripts/start-local.sh` uses this when
// DEVTOOLS=off; the benchmark (`scripts/bench worker`) runs both of its Workers this way.
//
// Stops cleanly on SIGINT/SIGTERM. Exits 1 if the Worker cannot start.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// Offline and quiet like start-local.sh: no telemetry, no lookup of Cloudflare's cf.json.
process.env.WRANGLER_SEND_METRICS ??= "false";
process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
process.env.NO_UPDATE_NOTIFIER ??= "1";

const here = path.dirname(fileURLToPath(import.meta.url));
const { unstable_startWorker: startWorker } = createRequire(path.join(here, "..", "package.json"))("wrangler");

const args = process.argv.slice(2);
let config = "wrangler.local.jsonc";
let port = 8787;
const bindings = {};
for (let i = 0; i < args.length; i++) {
  const [flag, value] = [args[i], args[i + 1]];
  if (value === undefined) usage(`${flag} needs a value`);
  i++;
  if (flag === "--config") config = value;
  else if (flag === "--port") port = Number(value);
  else if (flag === "--var") {
    const at = value.indexOf(":");
    if (at <= 0) usage(`--var wants NAME:VALUE, got ${value}`);
    bindings[value.slice(0, at)] = { type: "plain_text", value: value.slice(at + 1) };
  } else if (flag === "--secret-from-env") {
    if (!process.env[value]) usage(`--secret-from-env ${value}: not set in the environment`);
    bindings[value] = { type: "secret_text", value: process.env[value] };
  } else usage(`unknown option ${flag}`);
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) usage(`bad --port ${port}`);

function usage(why) {
  console.error(`serve.mjs: ${why}\nusage: serve.mjs --config <wrangler config> --port <n> [--var NAME:VALUE ...] [--secret-from-env NAME ...]`);
  process.exit(2);
}

let worker;
try {
  worker = await startWorker({
    config: path.resolve(config),
    bindings,
    dev: { inspector: false, watch: false, remote: false, server: { hostname: "127.0.0.1", port } },
  });
  await worker.ready;
} catch (e) {
  console.error(`serve.mjs: the Worker did not start: ${e?.stack ?? e}`);
  process.exit(1);
}
console.error(`serve.mjs: ${path.basename(config)} ready on http://127.0.0.1:${port} (no devtools session)`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    await worker.dispose().catch(() => {});
    process.exit(0);
  });
}
