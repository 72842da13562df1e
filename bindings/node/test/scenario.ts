/*
 * Tether binding scenario, TypeScript on Node (run by bindings/node/run.sh).
 *
 * Runs the TypeScript API that uniffi-bindgen-react-native generates for the crate (the
 * same API a React Native app gets through JSI), here in its N-API flavour: the
 * generated code loads the real target/debug/libtether.so through @ubjs/node and talks
 * to the contract server `tether serve`, which this program starts and scripts through
 * its /__admin endpoints. Follows tests/scenario.md, plus what only JS has:
 *
 *   - every async method returns a real Promise, and the event loop keeps running while
 *     Rust works (a JS timer fires during an in-flight call);
 *   - 10 concurrent `send`s via Promise.all after expire-tokens -> one refresh;
 *   - a JS AbortSignal cancels the Rust future: the promise rejects before the server's
 *     delayed handler has run, the HTTP request is abandoned (the server never completes
 *     the delayed job), and the client keeps working;
 *   - a CancelHandle cancels with TetherError.Cancelled;
 *   - chat (tests/scenario.md 15-17): a reply streamed through a TypeScript ChatListener
 *     into the history and paged back, a search, and an AbortSignal that cancels a long
 *     reply, which stays stored as Cancelled with its partial text;
 *   - TokenStore, Logger and AuthListener are implemented in TypeScript;
 *   - (scenario.md step 14) detect() on a PNG this program writes by hand; then a 413
 *     and a 402;
 *   - a Node process that ends with 8 slow listeners and a slow logger still registered
 *     (calls to them still queued) exits 0, whether its event loop runs dry or it calls
 *     process.exit: this program run again as a child with `--exit-child return|exit`.
 *
 *   npx tsx test/scenario.ts <path to the tether binary>
 *
 * The last line printed is `N passed, M failed`; the exit code is 1 if anything failed.
 */
// First: a fix to the ubrn runtime that passing a TypeScript UploadProgress needs.
import "../src/ubrn-fixes.ts";
import { ContractServer } from "./contract-server.ts";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";


import {
  ApiRequest,
  AuthState,
  CancelHandle,
  ClientConfig,
  MessageStatus,
  PageAt,
  SearchQuery,
  HttpMethod,
  ImageOptions,
  JobStatus,
  ImageSource,
  LogLevel,
  QuotaSource,
  RetryPolicy,
  TetherClient,
  TetherError,
  TokenStoreError,
  tetherVersion,
  type AuthListener,
  type JobInfo,
  type JobListener,
  type ChatListener,
  type Message,
  type Logger,
  type QuotaListener,
  type QuotaState,
  type TokenStore,
  type UploadProgress,
} from "../generated/index.ts";

// ---------------------------------------------------------------------------------------
// Tiny harness

let passed = 0;
let failed = 0;

function check(name: string, ok: boolean, detail: () => string = () => ""): void {
  if (ok) {
    passed++;
    console.log(`ok    ${name}`);
  } else {
    failed++;
    console.log(`FAIL  ${name} ${detail()}`);
  }
}

const STEP_TIMEOUT_MS = 30_000;

/** Runs a step; an unexpected exception or a hang fails it, and the scenario goes on. */
async function step(name: string, body: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`step timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  try {
    await Promise.race([body(), timeout]);
  } catch (e) {
    failed++;
    console.log(`FAIL  ${name}: unexpected ${describe(e)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** What `fn` threw (or the promise rejected with), or undefined if it succeeded. */
async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
    return undefined;
  } catch (e) {
    return e;
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls an asynchronous `cond` (a question to the server) until it holds, or 10 s pass. */
async function until(cond: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 1000; i++) {
    if (await cond()) return true;
    await sleep(10);
  }
  return false;
}

/** Polls `cond` (listener and logger calls arrive from Tether threads). */
async function eventually(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

const isSignedOutState = (s: AuthState) => AuthState.instanceOf(s) && AuthState.SignedOut.instanceOf(s);
const isUnknownState = (s: AuthState) => AuthState.instanceOf(s) && AuthState.Unknown.instanceOf(s);
const isSignedInAs = (s: AuthState, userId: string) =>
  AuthState.instanceOf(s) && AuthState.SignedIn.instanceOf(s) && s.inner.userId === userId && s.inner.anonymous;
const stateName = (s: AuthState | undefined) => (s === undefined ? "none" : s.tag);

// ---------------------------------------------------------------------------------------
// TypeScript implementations of the foreign traits

/** Records every job status a wait reports. */
class RecordingJobListener implements JobListener {
  statuses: JobStatus[] = [];
  onStatusChanged(job: JobInfo): void {
    this.statuses.push(job.status);
  }
}

/** What an app would back with the keychain / an encrypted store. */
class MapTokenStore implements TokenStore {
  value: string | undefined = undefined;
  saves = 0;
  clears = 0;
  load(): string | undefined {
    return this.value;
  }
  save(value: string): void {
    this.saves++;
    this.value = value;
  }
  clear(): void {
    this.clears++;
    this.value = undefined;
  }
}

/** A store that is never available (a locked keychain). */
class LockedTokenStore implements TokenStore {
  clears = 0;
  load(): string | undefined {
    throw new TokenStoreError.Unavailable({ detail: "keychain locked" });
  }
  save(_value: string): void {
    throw new TokenStoreError.Unavailable({ detail: "keychain locked" });
  }
  clear(): void {
    this.clears++;
    throw new TokenStoreError.Unavailable({ detail: "keychain locked" });
  }
}

class RecordingListener implements AuthListener {
  states: AuthState[] = [];
  refreshed: string[] = [];
  onStateChanged(state: AuthState): void {
    this.states.push(state);
  }
  onSessionRefreshed(userId: string): void {
    this.refreshed.push(userId);
  }
}

class RecordingQuotaListener implements QuotaListener {
  states: QuotaState[] = [];
  paywalls: string[] = [];
  onQuotaChanged(state: QuotaState): void {
    this.states.push(state);
  }
  onPaywall(planRequired: string, _state: QuotaState): void {
    this.paywalls.push(planRequired);
  }
}

class RecordingLogger implements Logger {
  lines: string[] = [];
  log(level: LogLevel, target: string, message: string): void {
    this.lines.push(`${LogLevel[level]} ${target} ${message}`);
  }
}

/** Blocks the JS thread, like a slow listener does. */
function blockFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Slow on purpose, so that calls are still queued when the process ends. */
class SlowListener implements AuthListener {
  count = 0;
  onStateChanged(_state: AuthState): void {
    blockFor(20);
    this.count++;
  }
  onSessionRefreshed(_userId: string): void {
    this.count++;
  }
}

class SlowLogger implements Logger {
  count = 0;
  log(_level: LogLevel, _target: string, _message: string): void {
    blockFor(5);
    this.count++;
  }
}


/** Records every upload progress call. */
class RecordingProgress implements UploadProgress {
  calls: [number, number, number][] = [];
  onProgress(attempt: number, sent: number, total: number): void {
    this.calls.push([attempt, sent, total]);
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(kind: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(kind, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A PNG made by hand (red above blue) with a tEXt chunk naming a place; returns it and the
 * same file without the text chunk, which is what a lossless strip must send.
 */
function pngWithText(w: number, h: number): [Buffer, Buffer] {
  const rows: Buffer[] = [];
  for (let y = 0; y < h; y++) {
    const px = y < h / 2 ? [0xe0, 0x10, 0x10] : [0x10, 0x10, 0xe0];
    rows.push(Buffer.from([0, ...Array.from({ length: w }, () => px).flat()]));
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const head = Buffer.concat([sig, pngChunk("IHDR", ihdr)]);
  const text = pngChunk("tEXt", Buffer.from("Location\u000048.8583N 2.2945E", "latin1"));
  const rest = Buffer.concat([pngChunk("IDAT", deflateSync(Buffer.concat(rows))), pngChunk("IEND", Buffer.alloc(0))]);
  return [Buffer.concat([head, text, rest]), Buffer.concat([head, rest])];
}

type UploadSeen = { sha256: string; content_type: string };


// ---------------------------------------------------------------------------------------

const quotaCall = ApiRequest.create({ method: HttpMethod.Get, path: "quota" });
const jobCall = ApiRequest.create({
  method: HttpMethod.Post,
  path: "jobs",
  jsonBody: JSON.stringify({ kind: "transcribe", input: { media: "node-test.m4a" } }),
});

async function scenario(server: ContractServer, dataDir: string): Promise<void> {
  // Short backoff so the scenario does not wait on retries it does not test.
  const config = ClientConfig.create({
    baseUrl: server.url,
    clientId: "node-scenario",
    dataDir,
    retry: RetryPolicy.create({ maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 200, maxRetryAfterS: 2 }),
    userAgentSuffix: "NodeScenario/1.0",
  });

  await step("library version", async () => {
    const v = tetherVersion();
    check("tetherVersion() is a version", /^\d+\.\d+\.\d+/.test(v), () => v);
  });

  // scenario step 18 skipped: the React idioms (useAuthState, useQuota, useChat, useUpload) are
  // hooks, run with a React test renderer in bindings/react-native/test/hooks.test.tsx.
  // scenario step 1
  await step("config validation", async () => {
    const e = await thrown(async () => new TetherClient({ ...config, baseUrl: "http://example.com" }, new MapTokenStore()));
    check(
      "http:// for a public host -> TetherError.Config at construction",
      TetherError.instanceOf(e) && TetherError.Config.instanceOf(e),
      () => `got ${describe(e)}`,
    );
    const e2 = await thrown(async () => new TetherClient({ ...config, clientId: " " }, new MapTokenStore()));
    check(
      "blank clientId -> TetherError.Config",
      TetherError.instanceOf(e2) && TetherError.Config.instanceOf(e2),
      () => `got ${describe(e2)}`,
    );
  });

  const store = new MapTokenStore();
  const logger = new RecordingLogger();
  const listener = new RecordingListener();
  // ubrn types secondary constructors as the `TetherClientLike` interface (no default
  // arguments, no uniffiDestroy); the object is a TetherClient.
  const client = TetherClient.withLogger(config, store, logger) as TetherClient;
  const subscription = client.addAuthListener(listener);
  let userId = "";

  // scenario step 2
  await step("restore on first launch", async () => {
    check("authState() before restore is Unknown", isUnknownState(client.authState()), () => stateName(client.authState()));
    const p = client.restoreSession();
    check("restoreSession() returns a Promise", p instanceof Promise);
    const s = await p;
    check("restoreSession() with an empty store -> SignedOut", isSignedOutState(s), () => stateName(s));
    check(
      "listener hears SignedOut",
      await eventually(() => listener.states.length > 0 && isSignedOutState(listener.states.at(-1)!)),
      () => listener.states.map(stateName).join(","),
    );
  });

  // scenario step 3
  await step("anonymous sign-in", async () => {
    const p = client.signInAnonymously("device-node-1");
    check("signInAnonymously() returns a Promise", p instanceof Promise);
    const user = await p;
    userId = user.id;
    check("-> an anonymous user", user.anonymous && user.id.startsWith("u_"), () => JSON.stringify(user));
    check(
      "the TypeScript TokenStore received the session",
      store.saves === 1 && store.value !== undefined && store.value.includes(user.id) && store.value.includes("refresh_token"),
      () => `saves=${store.saves}`,
    );
    check("authState() is SignedIn", isSignedInAs(client.authState(), user.id), () => stateName(client.authState()));
    check(
      "listener hears SignedIn",
      await eventually(() => listener.states.length > 0 && isSignedInAs(listener.states.at(-1)!, user.id)),
      () => listener.states.map(stateName).join(","),
    );
  });

  // scenario step 4
  await step("send GET quota", async () => {
    const p = client.send(quotaCall);
    check("send() returns a Promise", p instanceof Promise);
    const r = await p;
    check("GET quota -> 200 JSON naming the plan", r.status === 200 && JSON.parse(r.body).plan === "free", () => r.body);
    check("response carries the request id", r.requestId?.startsWith("req-") === true, () => `${r.requestId}`);
    const q = client.quota();
    check(
      "quota() filled in from the headers",
      q.plan === "free" && q.limit === 50 && q.source === QuotaSource.Server,
      () => `${q.plan} ${q.limit} ${q.source}`,
    );
  });

  // scenario step 5
  await step("expired tokens + 10 concurrent calls -> one refresh", async () => {
    const oldToken = await client.accessToken();
    await server.admin("expire-tokens");
    const before = await server.count("/api/v1/auth/refresh");
    const calls = Array.from({ length: 10 }, () => client.send(quotaCall));
    check("all 10 calls are Promises", calls.every((c) => c instanceof Promise));
    const results = await Promise.all(calls);
    const refreshes = (await server.count("/api/v1/auth/refresh")) - before;
    check(
      "all 10 concurrent calls -> 200",
      results.length === 10 && results.every((r) => r.status === 200),
      () => results.map((r) => r.status).join(","),
    );
    check("exactly 1 refresh for 10 callers", refreshes === 1, () => `refreshes=${refreshes}`);
    check("listener told of the rotation", await eventually(() => listener.refreshed.includes(userId)), () => listener.refreshed.join(","));
    const newToken = await client.accessToken();
    check("accessToken() is the rotated token", newToken !== oldToken && newToken.length > 20);
    check(
      "the rotated session was saved",
      // Saves: the sign-in, the refresh's recovery record, the rotated session.
      store.saves === 3 && store.value?.includes(newToken) === true,
      () => `saves=${store.saves}`,
    );
  });

  await step("next launch restores the session", async () => {
    const second = new TetherClient({ ...config, dataDir: join(dataDir, "next-launch") }, store);
    try {
      const s = await second.restoreSession();
      check("a second client on the same store -> SignedIn", isSignedInAs(s, userId), () => stateName(s));
    } finally {
      second.uniffiDestroy();
    }
  });

  // scenario step 6
  await step("a 503 with Retry-After: 0 is retried", async () => {
    const before = await server.count("/api/v1/jobs");
    await server.admin("fault", { path: "/api/v1/jobs", status: 503, retry_after: 0 });
    const r = await client.send(jobCall);
    const attempts = (await server.count("/api/v1/jobs")) - before;
    check("503 then 202, transparently", r.status === 202 && r.body.includes("job_id"), () => `${r.status} ${r.body}`);
    check("...in 2 attempts", attempts === 2, () => `attempts=${attempts}`);
  });

  await step("AbortSignal cancels the Rust future", async () => {
    // Reference point: the quota left before the aborted job.
    await client.send(quotaCall);
    const remainingBefore = client.quota().remaining;
    const jobsBefore = await server.count("/api/v1/jobs");
    const runsBefore = (await server.admin("job-runs")).count as number;

    await server.admin("fault", { path: "/api/v1/jobs", kind: "delay", ms: 3000 });
    const ac = new AbortController();
    const start = Date.now();
    const p = client.send(jobCall, undefined, { signal: ac.signal });
    check("send(req, undefined, { signal }) returns a Promise", p instanceof Promise);
    let ticks = 0;
    const tick = setInterval(() => ticks++, 10);
    setTimeout(() => ac.abort(), 100);
    const e = await thrown(() => p);
    clearInterval(tick);
    check("abort() after 100 ms -> the promise rejects", e !== undefined, () => "it resolved");
    check(
      "...with the runtime's AbortError (not a TetherError)",
      e instanceof Error && e.name === "AbortError" && !TetherError.instanceOf(e),
      () => describe(e),
    );
    const runsAtReject = (await server.admin("job-runs")).count as number;
    check(
      "...before the server's delayed handler ran (no job created yet)",
      runsAtReject === runsBefore,
      () => `job runs ${runsBefore} -> ${runsAtReject}`,
    );
    check("the JS event loop kept running meanwhile", ticks >= 5, () => `ticks=${ticks}`);
    const reached = (await server.count("/api/v1/jobs")) - jobsBefore;
    check("the job request had reached the server (it was in flight)", reached === 1, () => `requests=${reached}`);

    // The Rust future was dropped, so its HTTP request was abandoned and the server's
    // delayed handler never created the job: the quota is unchanged once the delay is
    // over. (Had only the JS promise been rejected, the job would be counted.)
    await sleep(Math.max(0, start + 3600 - Date.now()));
    const after = await client.send(quotaCall);
    check("a following call on the same client succeeds", after.status === 200, () => `${after.status}`);
    const remainingAfter = client.quota().remaining;
    check(
      "the aborted job was never completed on the server (quota unchanged after the delay)",
      remainingBefore !== undefined && remainingAfter === remainingBefore,
      () => `before=${remainingBefore} after=${remainingAfter}`,
    );
    const attempts = (await server.count("/api/v1/jobs")) - jobsBefore;
    check("...and it was not retried", attempts === 1, () => `requests=${attempts}`);

    const pre = new AbortController();
    pre.abort();
    const e2 = await thrown(() => client.send(quotaCall, undefined, { signal: pre.signal }));
    check("an already-aborted signal rejects at once", e2 instanceof Error && e2.name === "AbortError", () => describe(e2));
  });

  // scenario step 8 (and, above, an AbortSignal)
  await step("CancelHandle cancels a held call", async () => {
    // The server handles the request, then holds its response until `release`: the call
    // can only end before that by its cancellation (no clock involved).
    await server.admin("hold", { path: "/api/v1/quota" });
    const handle = new CancelHandle();
    const p = client.send(quotaCall, handle);
    check(
      "the call reached the server, which holds its answer",
      await until(async () => (await server.admin("hold-state", { path: "/api/v1/quota" })).handled === true),
    );
    handle.cancel();
    const e = await thrown(() => p);
    check(
      "cancelled call -> TetherError.Cancelled, while the server still held the answer",
      TetherError.instanceOf(e) && TetherError.Cancelled.instanceOf(e),
      () => `got ${describe(e)}`,
    );
    await server.admin("release", { path: "/api/v1/quota" });
    check("handle.isCancelled()", handle.isCancelled());
    const e2 = await thrown(() => client.send(quotaCall, handle));
    check(
      "an already-cancelled handle cancels the next call too",
      TetherError.instanceOf(e2) && TetherError.Cancelled.instanceOf(e2),
      () => `got ${describe(e2)}`,
    );
    handle.uniffiDestroy();
    const after = await client.send(quotaCall);
    check("the client still works afterwards", after.status === 200, () => `${after.status}`);
  });

  await step("chat: a reply streamed into the history, searched, and aborted", async () => {
    class Chat implements ChatListener {
      deltas: string[] = [];
      completed: Message[] = [];
      errors: unknown[] = [];
      onDelta(_messageId: string, text: string): void {
        this.deltas.push(text);
      }
      onComplete(message: Message): void {
        this.completed.push(message);
      }
      onError(_messageId: string, error: TetherError): void {
        this.errors.push(error);
      }
    }
    const pieces = Array.from({ length: 30 }, (_, i) => `piece${i} caf\u00e9 `);
    await server.admin("chat-script", { pieces, chunk_sizes: [3, 5], line_end: "crlf", keep_alive_every: 2 });
    // scenario step 15
    const conv = await client.createConversation("scenario", "Be brief.");
    const chat = new Chat();
    const reply = await client.sendMessage(conv.id, "hello from typescript", undefined, chat);
    check(
      "the reply streamed through the TypeScript listener is stored whole",
      reply.status === MessageStatus.Complete && reply.content === pieces.join("") &&
        chat.deltas.join("") === reply.content && chat.completed.length === 1,
      () => `${reply.status} ${chat.deltas.length}`,
    );
    const page = await client.listMessages(conv.id, new PageAt.Newest(), 1);
    const older = await client.listMessages(conv.id, new PageAt.Before({ messageId: page.messages[0].id }), 10);
    check(
      "paged back: newest, then before it",
      page.messages[0].id === reply.id && page.hasMore &&
        older.messages.map((m) => m.content).join("|") === "hello from typescript" && !older.hasMore,
      () => JSON.stringify(older.messages.map((m) => m.content)),
    );
    // scenario step 16
    const hits = await client.searchMessages(SearchQuery.create({ text: "piece7" }));
    check(
      "search finds the reply with a highlighted snippet",
      hits.length === 1 && hits[0].message.id === reply.id && hits[0].snippet.includes("[piece7]"),
      () => JSON.stringify(hits.map((h) => h.snippet)),
    );
    const bad = await thrown(async () => {
      for (const text of ['"quoted', "AND", "*", "(NEAR", "-x"]) await client.searchMessages(SearchQuery.create({ text }));
    });
    check("operators in the user's text raise no error", bad === undefined, () => describe(bad));

    // scenario step 17
    await server.admin("chat-script", { repeat: ["word ", 2000], delay_ms: 5 });
    const slow = new Chat();
    const ac = new AbortController();
    const p = client.sendMessage(conv.id, "a long one", undefined, slow, undefined, { signal: ac.signal });
    check("the long reply starts streaming", await eventually(() => slow.deltas.length > 0, 10_000));
    ac.abort();
    const e = await thrown(() => p);
    check("abort() -> the promise rejects with AbortError", e instanceof Error && e.name === "AbortError", () => describe(e));
    let last: Message | undefined;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      last = (await client.listMessages(conv.id, new PageAt.Newest(), 1)).messages[0];
      if (last.status === MessageStatus.Cancelled) break;
      await sleep(20);
    }
    const text = last?.content ?? "";
    check(
      "the aborted reply is stored as Cancelled with its partial text",
      last?.status === MessageStatus.Cancelled && text.length > 0 && text.length < 2000 * 5 &&
        "word ".repeat(2000).startsWith(text),
      () => `${last?.status} ${text.length}`,
    );
  });

  // scenario step 7
  await step("quota used up -> PlanRequired", async () => {
    const quotaListener = new RecordingQuotaListener();
    const quotaSubscription = client.addQuotaListener(quotaListener);
    await server.admin("quota-limit", { limit: 1 });
    const e = await thrown(() => client.send(jobCall));
    check(
      "a metered call -> TetherError.PlanRequired with planRequired \"pro\"",
      TetherError.instanceOf(e) && TetherError.PlanRequired.instanceOf(e) && e.inner.planRequired === "pro",
      () => `got ${describe(e)}`,
    );
    if (TetherError.instanceOf(e) && TetherError.PlanRequired.instanceOf(e)) {
      check("PlanRequired carries the quota (0 remaining)", e.inner.quota?.remaining === 0, () => `${e.inner.quota?.remaining}`);
    }
    check("quota().paywall is \"pro\"", client.quota().paywall === "pro", () => `${client.quota().paywall}`);
    check(
      "the QuotaListener hears onPaywall(\"pro\") once",
      await eventually(() => quotaListener.paywalls.length === 1 && quotaListener.paywalls[0] === "pro"),
      () => quotaListener.paywalls.join(","),
    );
    const sent = await server.count("/api/v1/jobs");
    const e2 = await thrown(() => client.send(jobCall));
    check(
      "fail-fast: PlanRequired with no request sent",
      TetherError.instanceOf(e2) && TetherError.PlanRequired.instanceOf(e2) && (await server.count("/api/v1/jobs")) === sent,
      () => `got ${describe(e2)}`,
    );
    await server.admin("plan", { plan: "pro", limit: 5000 });
    const lifted = await client.refreshQuota();
    check(
      "purchase -> refreshQuota() lifts the paywall",
      lifted.plan === "pro" && lifted.paywall === undefined && lifted.source === QuotaSource.Server,
      () => `${lifted.plan} ${lifted.paywall} ${lifted.source}`,
    );
    check("a job succeeds again", (await client.send(jobCall)).status === 202);
    quotaSubscription.cancel();
    const restored = await eventually(() => {
      const next = new TetherClient(config, new MapTokenStore());
      const q = next.quota();
      next.uniffiDestroy();
      return q.source === QuotaSource.Cached && q.plan === "pro";
    });
    check("a new client starts from the saved quota state (Cached, pro)", restored);
    await server.admin("plan", { plan: "free", limit: 50 });
  });

  // scenario step 9
  await step("logs never contain tokens", async () => {
    const access = await client.accessToken();
    const refresh = /"refresh_token"\s*:\s*"([^"]+)"/.exec(store.value ?? "")?.[1];
    const lines = logger.lines;
    check("the TypeScript Logger received Tether's log lines", lines.length > 3 && lines.some((l) => l.includes("tether::")), () => `${lines.length} lines`);
    check("a log line mentions the sign-in", lines.some((l) => l.includes("signed in")), () => lines.slice(0, 5).join(" | "));
    check("no log line contains the access token", access.length > 20 && !lines.some((l) => l.includes(access) || l.includes(access.slice(-16))));
    check(
      "no log line contains the refresh token",
      refresh !== undefined && refresh.length > 8 && !lines.some((l) => l.includes(refresh)),
      () => `refresh token found in the store: ${refresh !== undefined}`,
    );
  });

  // scenario step 10
  await step("sign out", async () => {
    const p = client.signOut();
    check("signOut() returns a Promise", p instanceof Promise);
    await p;
    check("authState() after signOut -> SignedOut", isSignedOutState(client.authState()), () => stateName(client.authState()));
    check("the TokenStore was cleared", store.value === undefined && store.clears >= 1, () => `clears=${store.clears}`);
    check(
      "listener hears SignedOut",
      await eventually(() => isSignedOutState(listener.states.at(-1)!)),
      () => listener.states.map(stateName).join(","),
    );
    const e = await thrown(() => client.send(quotaCall));
    check(
      "a call after sign-out -> TetherError.SignedOut",
      TetherError.instanceOf(e) && TetherError.SignedOut.instanceOf(e),
      () => `got ${describe(e)}`,
    );
    const e2 = await thrown(() => client.accessToken());
    check(
      "accessToken() after sign-out -> TetherError.SignedOut",
      TetherError.instanceOf(e2) && TetherError.SignedOut.instanceOf(e2),
      () => `got ${describe(e2)}`,
    );
  });

  // scenario step 11
  await step("a locked TokenStore", async () => {
    const locked = new LockedTokenStore();
    const broken = new TetherClient({ ...config, dataDir: join(dataDir, "locked") }, locked);
    try {
      const e = await thrown(() => broken.restoreSession());
      check(
        "restoreSession() -> TetherError.Storage naming the cause",
        TetherError.instanceOf(e) && TetherError.Storage.instanceOf(e) && e.inner.detail.includes("keychain locked"),
        () => `got ${describe(e)}`,
      );
      check("authState() stays Unknown (not signed out)", isUnknownState(broken.authState()), () => stateName(broken.authState()));
      check("the store was never cleared", locked.clears === 0, () => `clears=${locked.clears}`);
    } finally {
      broken.uniffiDestroy();
    }
  });

  const media = new TetherClient({ ...config, dataDir: join(dataDir, "media") }, new MapTokenStore());
  // scenario step 12
  await step("images (scenario 12)", async () => {
    await server.admin("quota-limit", { limit: 50 });
    await media.restoreSession();
    await media.signInAnonymously(undefined);
    const out = join(dataDir, "pictures");
    const img = await media.generateImage("a lighthouse", ImageOptions.create({ width: 300, height: 100, path: join(out, "a.png") }));
    const head = [...readFileSync(img.path).subarray(0, 8)];
    check(
      "generateImage writes a PNG sized by its IHDR (300x256)",
      img.width === 300 && img.height === 256 && head.join(",") === "137,80,78,71,13,10,26,10" && statSync(img.path).size === img.byteSize,
      () => JSON.stringify(img),
    );
    await server.admin("image-fault", { kind: "not-png" });
    const e = await thrown(() => media.generateImage("broken", ImageOptions.create({ width: 256, height: 256, path: join(out, "b.png") })));
    check("a non-PNG reply -> TetherError.Decode", TetherError.instanceOf(e) && TetherError.Decode.instanceOf(e), () => `got ${describe(e)}`);
    const left = readdirSync(out).sort();
    check("...and no file left behind", left.join(",") === "a.png", () => left.join(","));
  });

  // scenario step 13
  await step("jobs (scenario 13)", async () => {
    const job = await media.submitJob("transcribe", JSON.stringify({ url: "https://example.com/a.mp3", steps: 3 }));
    check("submitJob -> Queued with an id", job.status === JobStatus.Queued && job.id.startsWith("j_"), () => JSON.stringify(job));
    const heard = new RecordingJobListener();
    const done = await media.waitForJob(job.id, heard);
    check(
      "waitForJob -> Succeeded with a result",
      done.status === JobStatus.Succeeded && (done.resultJson ?? "").includes("transcript"),
      () => JSON.stringify(done),
    );
    check(
      "the listener heard Running then Succeeded",
      heard.statuses.join(",") === [JobStatus.Running, JobStatus.Succeeded].join(","),
      () => heard.statuses.join(","),
    );
    const failing = await media.submitJob("transcribe", JSON.stringify({ url: "https://example.com/a.mp3", fail: true }));
    const failedJob = await media.waitForJob(failing.id, new RecordingJobListener());
    check("a failed job is a value", failedJob.status === JobStatus.Failed && failedJob.error?.code === "internal", () => JSON.stringify(failedJob));
    const e = await thrown(() => media.submitJob("summarize", "{}"));
    check(
      "unknown kind -> TetherError.InvalidInput(invalid_input)",
      TetherError.instanceOf(e) && TetherError.InvalidInput.instanceOf(e) && e.inner.code === "invalid_input",
      () => `got ${describe(e)}`,
    );
    const e2 = await thrown(() => media.job("j_missing"));
    check(
      "unknown id -> TetherError.InvalidInput(not_found)",
      TetherError.instanceOf(e2) && TetherError.InvalidInput.instanceOf(e2) && e2.inner.code === "not_found",
      () => `got ${describe(e2)}`,
    );
  });
  media.uniffiDestroy();

  // scenario step 14
  await step("image upload: detect with progress, 413, 402", async () => {
    await client.signInAnonymously();
    const [png, stripped] = pngWithText(120, 80);
    const path = join(dataDir, "photo.jpg"); // a PNG named .jpg: sniffed from its bytes
    writeFileSync(path, png);
    // `progress` is `Option<Arc<dyn UploadProgress>>`: a TypeScript object inside an Option,
    // which needs the runtime fix in src/ubrn-fixes.ts (imported first, above).
    const progress = new RecordingProgress();
    const d = await client.detect(new ImageSource.File({ path }), undefined, progress);
    check("detect finds the server's object", d.objects[0]?.label === "cat" && d.model === "yolov8n", () => JSON.stringify(d));
    const i = d.image;
    check(
      "ImageInfo: a PNG, 120x80, not resized, metadata stripped",
      i.mediaType === "image/png" && i.width === 120 && i.height === 80 && !i.resized && i.metadataStripped && i.byteSize === stripped.length,
      () => JSON.stringify(i),
    );
    const ups = (await server.admin("uploads")).uploads as UploadSeen[];
    const want = createHash("sha256").update(stripped).digest("hex");
    check(
      "the server received the PNG without its text chunk (SHA-256)",
      ups.length === 1 && ups.every((u) => u.sha256 === want && u.content_type === "image/png"),
      () => JSON.stringify(ups),
    );
    const last = progress.calls.at(-1);
    check(
      "the TypeScript UploadProgress is called, monotonic, ending at sent == total on attempt 1",
      last !== undefined && last[0] === 1 && last[1] === last[2] && last[2] > stripped.length &&
        progress.calls.every((c, k) => k === 0 || progress.calls[k - 1]![1] <= c[1]),
      () => JSON.stringify(progress.calls),
    );
    await server.admin("upload-limit", { bytes: 100 });
    const e = await thrown(() => client.detect(new ImageSource.File({ path })));
    check(
      "over the server's limit -> PayloadTooLarge(maxBytes 100)",
      TetherError.instanceOf(e) && TetherError.PayloadTooLarge.instanceOf(e) && e.inner.maxBytes === 100,
      () => `got ${describe(e)}`,
    );
    await server.admin("upload-limit");
    await server.admin("quota-limit", { limit: 0 });
    const bytes = png.buffer.slice(png.byteOffset, png.byteOffset + png.length) as ArrayBuffer;
    const e2 = await thrown(() => client.detect(new ImageSource.Bytes({ data: bytes })));
    check(
      "detect with the quota used up -> PlanRequired(\"pro\", 0 remaining)",
      TetherError.instanceOf(e2) && TetherError.PlanRequired.instanceOf(e2) && e2.inner.planRequired === "pro" &&
        e2.inner.quota?.remaining === 0,
      () => `got ${describe(e2)}`,
    );
    const after = (await server.admin("uploads")).uploads as UploadSeen[];
    check("...and nothing was charged", after.length === 1, () => `${after.length} uploads`);
    await server.admin("quota-limit", { limit: 50 });
    const q = await client.refreshQuota();
    check("refreshQuota() lifts the paywall", q.paywall === undefined, () => `${q.paywall}`);
    await client.signOut();
  });

  subscription.cancel();
  client.uniffiDestroy();
}

/**
 * The child: signs in and out with 8 slow listeners and a slow logger registered, then
 * ends with all of them still registered and calls still queued: `return` lets the event
 * loop run dry, `exit` calls process.exit(0).
 */
async function exitChild(how: string, url: string, dataDir: string): Promise<void> {
  const config = ClientConfig.create({ baseUrl: url, clientId: "node-exit", dataDir, logLevel: LogLevel.Debug });
  const logger = new SlowLogger();
  const client = TetherClient.withLogger(config, new MapTokenStore(), logger) as TetherClient;
  const listeners = Array.from({ length: 8 }, () => new SlowListener());
  const subscriptions = listeners.map((l) => client.addAuthListener(l));
  await client.restoreSession();
  await client.signInAnonymously("device-node-exit");
  await eventually(() => listeners.every((l) => l.count >= 1) && logger.count > 0, 10_000);
  await client.signOut();
  const events = Math.min(...listeners.map((l) => l.count));
  console.log(`registered listeners=${subscriptions.length} events=${events} logs=${logger.count}`);
  if (how === "exit") process.exit(0);
}

function runChild(args: string[], ms: number): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolveChild) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      out += "\n[no exit after " + ms + " ms: killed]";
      child.kill("SIGKILL");
    }, ms);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolveChild({ code, signal, out });
    });
  });
}

async function exitChecks(server: ContractServer): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  for (const how of ["return", "exit", "return"]) {
    const dir = mkdtempSync(join(tmpdir(), "tether-node-exit-"));
    try {
      // execArgv carries tsx's loader, so the child runs this same TypeScript file.
      const r = await runChild([...process.execArgv, self, "--exit-child", how, server.url, dir], 120_000);
      const m = /registered listeners=8 events=(\d+) logs=(\d+)/.exec(r.out);
      check(
        `a Node process ending (${how}) with 8 listeners and a logger registered exits 0`,
        r.code === 0 && m !== null && Number(m[1]) >= 1 && Number(m[2]) >= 1,
        () => `code=${r.code} signal=${r.signal} output=${r.out.slice(-800)}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === "--exit-child") {
    await exitChild(process.argv[3]!, process.argv[4]!, process.argv[5]!);
    return;
  }
  const here = dirname(fileURLToPath(import.meta.url));
  const binary = process.argv[2] ?? resolve(here, "../../../target/debug/tether");
  const dataDir = mkdtempSync(join(tmpdir(), "tether-node-"));
  let server: ContractServer | undefined;
  try {
    server = await ContractServer.start(binary);
    await scenario(server, dataDir);
    await exitChecks(server);
  } catch (e) {
    failed++;
    console.log(`FAIL  scenario aborted: ${describe(e)}`);
  } finally {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  // Exit explicitly: the native runtime may hold (unref'd) handles.
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

await main();
