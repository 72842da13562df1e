#!/usr/bin/env node
// scripts/bench-worker.mjs — the `worker` suite of scripts/bench.
//
// What it measures, from ONE run against the local Worker (wrangler dev, offline,
// local stand-ins for Workers AI and the detect Container):
//
//   worker/quota_cpu_ms   CPU time (utime+stime from /proc/<pid>/stat) that the workerd
//                         process running the Worker spends per authenticated
//                         GET /api/v1/quota, 50 concurrent keep-alive connections.
//                         baseline = the same figure, same client, same concurrency, same
//                         wrangler/workerd, for the bare Worker in worker/bench/bare/ that
//                         answers a constant JSON body of the same shape (no auth, no
//                         Durable Object, no quota lookup). Rounds alternate bare/quota.
//                         ratio = value / baseline, target <= 2.0.
//   worker/quota_cpu_ms_devtools  the same comparison (same tokens, fresh processes) under
//                         the `wrangler dev` command, which always attaches a devtools
//                         session; printed for comparison, no target (see "Harness").
//   worker/detect_cpu_ms  the same CPU figure per POST /api/v1/detect carrying a real
//                         ~1 MB JPEG (multipart, stand-in model), 50 concurrent; target < 10.
//   worker/detect_p50     client-side latency of those detect requests (ms), per round
//   worker/detect_p99     percentile, median over rounds.
//   worker/errors         every request of the whole bench (sign-ins, warm-ups, bare and
//                         counted rounds) that failed or answered non-2xx; target 0.
//
// The workerd process measured is the one that runs the Worker's code: wrangler dev
// starts two workerd processes under its node process, a proxy bound to the public port
// and the runtime (user Worker, its Durable Objects and Miniflare's entry worker) on a
// private port. We pick the workerd descendant NOT bound to the public port (its figure
// goes to stdout); the proxy's figure goes to stderr for information only. Node/wrangler
// CPU is never counted.
//
// Harness: both Workers run on wrangler's local dev server (Miniflare + workerd, the
// same as `wrangler dev`) started through wrangler's own API without a devtools session
// (worker/scripts/serve.mjs; the Worker via DEVTOOLS=off worker/scripts/start-local.sh).
// Under the `wrangler dev` command every console.log is also captured and shipped over
// the devtools protocol, ~0.07 ms of runtime CPU per call; production has no devtools
// session, and the Worker writes one log line per request, the bare Worker none. So the
// measured figure is taken without it, and the `wrangler dev` figure is printed beside it.
//
// Limits: the Worker runs with its own local configuration (wrangler.local.jsonc, via
// worker/scripts/start-local.sh); no rate or quota limit is raised. Instead the load is
// SPREAD OVER MANY ANONYMOUS USERS so that no user exceeds its limits: each user makes at
// most PER_USER_MAX (40) requests in the whole bench, under both the per-user rate limit
// (RATE_LIMIT_PER_MINUTE, 60) and the free daily quota (QUOTA_LIMIT_FREE, 50). Every quota
// and detect request carries a valid bearer token obtained by POST /api/v1/auth/anonymous
// beforehand; every detect carries a fresh Idempotency-Key (UUID v4).
//
// Statistics: one warm-up round of each kind (not counted), then ROUNDS (>= 5) counted
// rounds; each figure is the median over rounds, min/max go to stderr. Everything except
// the `bench ...` lines goes to stderr. Exits 0 even when a target is missed; non-zero only
// when the bench itself could not run.
//
// Environment knobs: BENCH_ROUNDS (5), BENCH_QUOTA_REQS (1000 per round),
// BENCH_DETECT_REQS (200 per round), BENCH_CONCURRENCY (50), BENCH_WORKER_PORT (18787),
// BENCH_BARE_PORT (18788), BENCH_DEADLINE_S (600, whole bench), BENCH_JPEG (use this file),
// BENCH_PER_USER_MAX (40; raise it only together with the Worker's limits, which
// start-local.sh takes from RATE_LIMIT_PER_MINUTE / QUOTA_LIMIT_FREE in the environment).

import { spawn, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const WORKER_DIR = path.join(ROOT, "worker");
const int = (name, dflt) => {
  const v = process.env[name];
  return v && /^\d+$/.test(v) ? Number(v) : dflt;
};
const ROUNDS = Math.max(5, int("BENCH_ROUNDS", 5));
const QUOTA_REQS = int("BENCH_QUOTA_REQS", 1000);
const DETECT_REQS = int("BENCH_DETECT_REQS", 200);
const CONC = int("BENCH_CONCURRENCY", 50);
const WORKER_PORT = int("BENCH_WORKER_PORT", 18787);
const BARE_PORT = int("BENCH_BARE_PORT", 18788);
const DEADLINE_MS = int("BENCH_DEADLINE_S", 600) * 1000;
const PER_USER_MAX = int("BENCH_PER_USER_MAX", 40);
const CLIENT_ID = "com.tether.bench";
const HOST = "127.0.0.1";
const T0 = Date.now();

const log = (...a) => console.error("[bench worker]", ...a);
const out = (line) => process.stdout.write(line + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (x, d = 3) => (Number.isFinite(x) ? Number(x.toFixed(d)).toString() : "nan");
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
function checkDeadline() {
  if (Date.now() - T0 > DEADLINE_MS) throw new Error(`bench deadline of ${DEADLINE_MS / 1000}s exceeded`);
}

// ---------------------------------------------------------------- processes

const children = []; // { name, child } started by us, each in its own process group

function startProcess(name, cmd, args, opts) {
  const logFile = path.join(os.tmpdir(), `bench-worker-${name}-${process.pid}.log`);
  const fd = fs.openSync(logFile, "w");
  const child = spawn(cmd, args, { ...opts, detached: true, stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  children.push({ name, child, logFile });
  log(`started ${name} (pid ${child.pid}), log ${logFile}`);
  return { child, logFile };
}

function stopAll() {
  for (const { name, child } of children.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    try {
      process.kill(-child.pid, "SIGTERM"); // its own process group: wrangler, node, workerd
    } catch {}
    const t = Date.now();
    while (Date.now() - t < 3000) {
      try {
        process.kill(-child.pid, 0);
      } catch {
        break;
      }
      execFileSync("sleep", ["0.1"]);
    }
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
    log(`stopped ${name}`);
  }
}
process.on("exit", stopAll);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));

function tail(file, n = 30) {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

// All descendants of `pid` (from /proc), as [{ pid, cmdline }].
function descendants(rootPid) {
  const kids = new Map();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {}
  }
  const res = [];
  const stack = [rootPid];
  while (stack.length) {
    for (const k of kids.get(stack.pop()) || []) {
      let cmdline = "";
      try {
        cmdline = fs.readFileSync(`/proc/${k}/cmdline`, "utf8").split("\0").join(" ");
      } catch {}
      res.push({ pid: k, cmdline });
      stack.push(k);
    }
  }
  return res;
}

// The workerd processes under a wrangler dev started by us: { runtime, proxy }.
function findWorkerd(rootPid, publicPort) {
  const w = descendants(rootPid).filter((p) => /(^|\/)workerd serve/.test(p.cmdline));
  const isProxy = (p) => p.cmdline.includes(`entry=${HOST}:${publicPort} `) || p.cmdline.includes(`:${publicPort} `);
  const runtime = w.filter((p) => !isProxy(p));
  const proxy = w.filter(isProxy);
  if (runtime.length !== 1) {
    throw new Error(`expected one runtime workerd under pid ${rootPid}, found: ${JSON.stringify(w.map((p) => p.cmdline.slice(0, 160)))}`);
  }
  return { runtime: runtime[0].pid, proxy: proxy.length === 1 ? proxy[0].pid : null };
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

// utime + stime of a process (all its threads), in ms.
function cpuMs(pid) {
  if (!pid) return NaN;
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // after "pid (comm) ": state=f[0], ..., utime=f[11], stime=f[12]
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

// ---------------------------------------------------------------- HTTP

const agent = new http.Agent({ keepAlive: true, maxSockets: CONC, maxFreeSockets: CONC });
let errorCount = 0;
let requestCount = 0;
const errorSamples = [];

function noteError(what) {
  errorCount++;
  if (errorSamples.length < 10) errorSamples.push(what);
}

function request(port, method, pathname, headers = {}, body = null, timeoutMs = 30000) {
  return new Promise((resolve) => {
    const t = process.hrtime.bigint();
    const h = { "user-agent": "tether-bench/0.1 (node)", "x-client-id": CLIENT_ID, ...headers };
    if (body) h["content-length"] = String(body.length);
    const req = http.request({ host: HOST, port, method, path: pathname, headers: h, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: Buffer.concat(chunks),
          ms: Number(process.hrtime.bigint() - t) / 1e6,
        }),
      );
      res.on("error", (e) => resolve({ status: 0, error: e, ms: NaN }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", (e) => resolve({ status: 0, error: e, ms: NaN }));
    if (body) req.end(body);
    else req.end();
  });
}

// Counted request: any failure or non-2xx adds to worker/errors.
async function call(label, port, method, pathname, headers, body) {
  requestCount++;
  const r = await request(port, method, pathname, headers, body);
  if (!(r.status >= 200 && r.status < 300)) {
    noteError(`${label}: ${r.status || r.error?.message} ${r.body ? r.body.toString("utf8").slice(0, 200) : ""}`);
  }
  return r;
}

// n requests, at most `conc` in flight; makeReq(i) -> Promise<response>. Returns latencies (ms) of 2xx.
async function pool(n, conc, makeReq) {
  let next = 0;
  const lat = [];
  async function lane() {
    while (next < n) {
      const i = next++;
      const r = await makeReq(i);
      if (r.status >= 200 && r.status < 300) lat.push(r.ms);
    }
  }
  await Promise.all(Array.from({ length: Math.min(conc, n) }, lane));
  return lat;
}

async function waitReady(port, proc, what, timeoutMs) {
  const t = Date.now();
  while (Date.now() - t < timeoutMs) {
    if (proc.child.exitCode !== null) {
      throw new Error(`${what} exited (code ${proc.child.exitCode}) before answering:\n${tail(proc.logFile)}`);
    }
    const r = await request(port, "GET", "/api/v1/quota", {}, null, 2000);
    if (r.status > 0) {
      log(`${what} answers on ${HOST}:${port} after ${((Date.now() - t) / 1000).toFixed(1)} s (GET /api/v1/quota -> ${r.status})`);
      return;
    }
    await sleep(500);
  }
  throw new Error(`${what} did not answer on ${HOST}:${port} within ${timeoutMs / 1000} s:\n${tail(proc.logFile)}`);
}

async function signIn(n, tag) {
  const tokens = [];
  await pool(n, 5, async (i) => {
    const r = await call("anonymous sign-in", WORKER_PORT, "POST", "/api/v1/auth/anonymous",
      { "content-type": "application/json" }, Buffer.from(JSON.stringify({ device_id: `bench-${tag}-${i}-${process.pid}` })));
    if (r.status === 200 || r.status === 201) {
      const s = JSON.parse(r.body.toString("utf8"));
      if (!s.access_token) throw new Error("anonymous sign-in returned no access_token");
      tokens.push(s.access_token);
    }
    return r;
  });
  if (tokens.length < n) throw new Error(`only ${tokens.length} of ${n} anonymous sign-ins succeeded: ${errorSamples.join(" | ")}`);
  return tokens;
}

// ---------------------------------------------------------------- the 1 MB JPEG

function makeJpeg() {
  if (process.env.BENCH_JPEG) return fs.readFileSync(process.env.BENCH_JPEG);
  const file = path.join(os.tmpdir(), `bench-worker-${process.pid}.jpg`);
  const venv = path.join(ROOT, ".tools", "venv");
  const py = path.join(venv, "bin", "python");
  const quiet = { stdio: ["ignore", "ignore", "inherit"] };
  if (!fs.existsSync(py)) {
    log(`creating ${venv} for Pillow`);
    execFileSync("python3", ["-m", "venv", venv], quiet);
  }
  try {
    execFileSync(py, ["-c", "import PIL"], { stdio: "ignore" });
  } catch {
    log("installing Pillow 12.0.0 into .tools/venv");
    execFileSync(py, ["-m", "pip", "install", "-q", "pillow==12.0.0"], quiet);
  }
  execFileSync(py, [path.join(WORKER_DIR, "bench", "make_jpeg.py"), file], quiet);
  const data = fs.readFileSync(file);
  fs.unlinkSync(file);
  return data;
}

function multipart(image) {
  const boundary = "----tether-bench-" + randomUUID();
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n` +
      `Content-Type: image/jpeg\r\n\r\n`,
  );
  const tailBuf = Buffer.from(
    `\r\n--${boundary}\r\nContent-Disposition: form-data; name="options"\r\nContent-Type: application/json\r\n\r\n` +
      `{"min_score":0.25,"max_objects":20}\r\n--${boundary}--\r\n`,
  );
  return { body: Buffer.concat([head, image, tailBuf]), type: `multipart/form-data; boundary=${boundary}` };
}

// ---------------------------------------------------------------- main

// Starts the Worker (worker/scripts/start-local.sh) and the bare baseline Worker with the
// same wrangler settings. devtools=false: wrangler's local dev server without a devtools
// session (worker/scripts/serve.mjs), the measured setting; devtools=true: the
// `wrangler dev` command, which always attaches one.
async function startPair(devtools) {
  const env = {
    ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", CI: "1", NO_UPDATE_NOTIFIER: "1",
    WRANGLER_LOG: process.env.WRANGLER_LOG || "log", DEVTOOLS: devtools ? "on" : "off",
  };
  const tag = devtools ? "-devtools" : "";
  const main = startProcess(`worker${tag}`, "bash", [path.join(WORKER_DIR, "scripts", "start-local.sh"), String(WORKER_PORT)], { cwd: ROOT, env });
  await waitReady(WORKER_PORT, main, "Worker", 300000);

  const bareConfig = path.join(WORKER_DIR, "bench", "bare", "wrangler.jsonc");
  const bare = devtools
    ? startProcess(`bare${tag}`, path.join(WORKER_DIR, "node_modules", ".bin", "wrangler"),
      ["dev", "-c", bareConfig, "--ip", HOST, "--port", String(BARE_PORT), "--inspector-ip", HOST, "--show-interactive-dev-session=false"],
      { cwd: path.dirname(bareConfig), env })
    : startProcess(`bare${tag}`, "node", [path.join(WORKER_DIR, "scripts", "serve.mjs"), "--config", bareConfig, "--port", String(BARE_PORT)],
      { cwd: path.dirname(bareConfig), env });
  await waitReady(BARE_PORT, bare, "bare Worker", 120000);

  const wMain = findWorkerd(main.child.pid, WORKER_PORT);
  const wBare = findWorkerd(bare.child.pid, BARE_PORT);
  log(`${devtools ? "wrangler dev" : "no devtools"}: workerd runtime pids: Worker ${wMain.runtime} (proxy ${wMain.proxy}), bare ${wBare.runtime} (proxy ${wBare.proxy})`);
  return { main, bare, wMain, wBare };
}

async function main() {
  log(`rounds=${ROUNDS} quota_reqs=${QUOTA_REQS} detect_reqs=${DETECT_REQS} concurrency=${CONC} CLK_TCK=${CLK_TCK}`);
  const jpeg = makeJpeg();
  log(`JPEG: ${jpeg.length} bytes (SOI ${jpeg[0].toString(16)}${jpeg[1].toString(16)})`);
  const form = multipart(jpeg);

  // Same wrangler settings for both Workers (start-local.sh uses these defaults too).
  for (const port of [WORKER_PORT, BARE_PORT]) {
    if ((await request(port, "GET", "/", {}, null, 2000)).status > 0) {
      throw new Error(`something already answers on ${HOST}:${port}; stop it or set BENCH_WORKER_PORT / BENCH_BARE_PORT`);
    }
  }
  let pair = await startPair(false);
  let { wMain, wBare } = pair;

  // Users: each makes at most PER_USER_MAX requests of a kind over the whole bench.
  const quotaTotal = QUOTA_REQS * (ROUNDS + 1);
  const detectTotal = DETECT_REQS * (ROUNDS + 1);
  const nQuotaUsers = Math.max(CONC, Math.ceil(quotaTotal / PER_USER_MAX));
  const nDetectUsers = Math.max(1, Math.ceil(detectTotal / PER_USER_MAX));
  log(`signing in ${nQuotaUsers} + ${nDetectUsers} anonymous users`);
  const quotaTokens = await signIn(nQuotaUsers, "q");
  const detectTokens = await signIn(nDetectUsers, "d");
  checkDeadline();

  let quotaSeq = 0;
  let detectSeq = 0;
  const quotaReq = () => {
    const k = quotaSeq++;
    return call("GET /api/v1/quota", WORKER_PORT, "GET", "/api/v1/quota", { authorization: `Bearer ${quotaTokens[k % quotaTokens.length]}` });
  };
  const bareReq = () => call("bare GET", BARE_PORT, "GET", "/api/v1/quota", {});
  const detectReq = () => {
    const k = detectSeq++;
    return call("POST /api/v1/detect", WORKER_PORT, "POST", "/api/v1/detect",
      { authorization: `Bearer ${detectTokens[k % detectTokens.length]}`, "content-type": form.type, "idempotency-key": randomUUID() },
      form.body);
  };

  // One measured round: CPU of the runtime (and proxy) workerd per request, and latencies.
  // If wrangler restarted its runtime during the round (it reloads when the Worker's source
  // files change), the figure is void: find the new workerd and run the round again (twice
  // at most).
  async function round(n, which, makeReq) {
    for (let attempt = 0; ; attempt++) {
      const pids = which === "bare" ? wBare : wMain;
      await sleep(200); // let the previous round's tail settle
      try {
        const c0 = cpuMs(pids.runtime);
        const p0 = cpuMs(pids.proxy);
        const t0 = Date.now();
        const lat = await pool(n, CONC, makeReq);
        const wall = Date.now() - t0;
        const cpu = (cpuMs(pids.runtime) - c0) / n;
        const proxyCpu = (cpuMs(pids.proxy) - p0) / n;
        checkDeadline();
        return { cpu, proxyCpu, wall, lat };
      } catch (e) {
        if (e.code !== "ENOENT" || attempt >= 2) throw e;
        log(`the ${which} workerd went away during a round (wrangler reload?); finding it again and repeating the round`);
        await sleep(3000);
        if (which === "bare") wBare = findWorkerd(pair.bare.child.pid, BARE_PORT);
        else wMain = findWorkerd(pair.main.child.pid, WORKER_PORT);
      }
    }
  }

  const bareCpu = [];
  const quotaCpu = [];
  const detectCpu = [];
  const p50s = [];
  const p99s = [];
  const extra = { bareProxy: [], quotaProxy: [], detectProxy: [], quotaP50: [], bareP50: [] };
  for (let r = 0; r <= ROUNDS; r++) {
    const warm = r === 0;
    const tag = warm ? "warm-up" : `round ${r}/${ROUNDS}`;
    const b = await round(QUOTA_REQS, "bare", bareReq);
    const q = await round(QUOTA_REQS, "worker", quotaReq);
    const d = await round(DETECT_REQS, "worker", detectReq);
    const dp50 = percentile(d.lat, 50);
    const dp99 = percentile(d.lat, 99);
    log(`${tag}: bare ${fmt(b.cpu)} ms cpu/req (${b.wall} ms wall), quota ${fmt(q.cpu)} ms cpu/req (${q.wall} ms wall, p50 ${fmt(percentile(q.lat, 50), 2)} ms), ` +
      `detect ${fmt(d.cpu)} ms cpu/req (${d.wall} ms wall, p50 ${fmt(dp50, 1)} ms, p99 ${fmt(dp99, 1)} ms), errors so far ${errorCount}`);
    if (warm) continue;
    bareCpu.push(b.cpu);
    quotaCpu.push(q.cpu);
    detectCpu.push(d.cpu);
    p50s.push(dp50);
    p99s.push(dp99);
    extra.bareProxy.push(b.proxyCpu);
    extra.quotaProxy.push(q.proxyCpu);
    extra.detectProxy.push(d.proxyCpu);
    extra.quotaP50.push(percentile(q.lat, 50));
    extra.bareP50.push(percentile(b.lat, 50));
  }

  // The same quota/bare comparison under the `wrangler dev` command, whose devtools
  // session makes every console.log cost more (see worker/scripts/serve.mjs). Printed
  // for comparison, without a target: production has no devtools session.
  stopAll();
  pair = await startPair(true);
  ({ wMain, wBare } = pair);
  const devBare = [];
  const devQuota = [];
  for (let r = 0; r <= ROUNDS; r++) {
    const b = await round(QUOTA_REQS, "bare", bareReq);
    const q = await round(QUOTA_REQS, "worker", quotaReq);
    log(`devtools ${r === 0 ? "warm-up" : `round ${r}/${ROUNDS}`}: bare ${fmt(b.cpu)} ms cpu/req, quota ${fmt(q.cpu)} ms cpu/req, errors so far ${errorCount}`);
    if (r === 0) continue;
    devBare.push(b.cpu);
    devQuota.push(q.cpu);
  }

  const mm = (name, xs, unit = "ms") =>
    log(`${name}: median ${fmt(median(xs))} min ${fmt(Math.min(...xs))} max ${fmt(Math.max(...xs))} ${unit} over ${xs.length} rounds`);
  mm("bare cpu/req", bareCpu);
  mm("quota cpu/req", quotaCpu);
  mm("detect cpu/req", detectCpu);
  mm("detect p50", p50s);
  mm("detect p99", p99s);
  mm("(info) wrangler proxy workerd cpu/req, bare", extra.bareProxy);
  mm("(info) wrangler proxy workerd cpu/req, quota", extra.quotaProxy);
  mm("(info) wrangler proxy workerd cpu/req, detect", extra.detectProxy);
  mm("(info) bare latency p50", extra.bareP50);
  mm("(info) quota latency p50", extra.quotaP50);
  mm("(info) under `wrangler dev` (devtools session): bare cpu/req", devBare);
  mm("(info) under `wrangler dev` (devtools session): quota cpu/req", devQuota);
  log(`requests: ${requestCount}, errors: ${errorCount}${errorSamples.length ? "; first: " + errorSamples.join(" | ") : ""}`);

  const qv = median(quotaCpu);
  const bv = median(bareCpu);
  const ratio = qv / bv;
  const dv = median(detectCpu);
  out(`bench worker/quota_cpu_ms value=${fmt(qv)} unit=ms baseline=${fmt(bv)} ratio=${fmt(ratio, 2)} target=<=2.0 ok=${ratio <= 2.0}`);
  const dq = median(devQuota);
  const db = median(devBare);
  out(`bench worker/quota_cpu_ms_devtools value=${fmt(dq)} unit=ms baseline=${fmt(db)} ratio=${fmt(dq / db, 2)}`);
  out(`bench worker/detect_cpu_ms value=${fmt(dv)} unit=ms target=<10 ok=${dv < 10}`);
  out(`bench worker/detect_p50 value=${fmt(median(p50s), 1)} unit=ms`);
  out(`bench worker/detect_p99 value=${fmt(median(p99s), 1)} unit=ms`);
  out(`bench worker/errors value=${errorCount} unit=count target=<=0 ok=${errorCount === 0}`);
}

main()
  .then(() => {
    stopAll();
    process.exit(0);
  })
  .catch((e) => {
    log(`FAILED: ${e.stack || e}`);
    stopAll();
    process.exit(1);
  });
