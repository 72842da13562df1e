/*
 * The React hooks of react-native-tether (src/hooks.ts) rendered on Node with
 * react-test-renderer, against the real core (debug libtether.so, through the N-API
 * flavour of the same generated API: test/napi-loader.mjs swaps it in) and the contract
 * server `tether serve`, scripted through its /__admin endpoints. Run by check.sh:
 *
 *   node --import tsx --import ./test/napi-loader.mjs test/hooks.test.tsx <tether binary>
 *
 * Checks: useAuthState follows sign-in; useChat shows the reply growing as it streams,
 * then the stored reply, and `cancel` stops one (stored Cancelled); useUpload reports
 * progress up to the whole body and the detection, and `cancel` stops a slow upload;
 * useQuota raises the paywall on a 402 and lowers it after a purchase; unmounting
 * disposes every listener subscription (no listener call after that, no more renders)
 * and aborts a reply still streaming. The last line is `N passed, M failed`.
 */
// First, as in the app: the runtime fix (a TypeScript UploadProgress inside an Option).
import "../src/runtime-fixes.ts";
import { ContractServer } from "../../node/test/contract-server.ts";

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";

import { createElement } from "react";
import TestRenderer, { type ReactTestRenderer } from "react-test-renderer";

// Types from the package's (JSI) API module; at run time the N-API one answers (same API).
import api, {
  ApiRequest,
  ClientConfig,
  HttpMethod,
  ImageSource,
  MessageStatus,
  RetryPolicy,
  TetherClient,
  TetherError,
  type AuthListener,
  type AuthState,
  type QuotaListener,
  type QuotaState,
  type SubscriptionLike,
  type TetherClientLike,
  type TokenStore,
} from "../src/generated/tether.ts";
import { useAuthState, useChat, useQuota, useUpload, type ChatHook, type QuotaHook, type UploadHook } from "../src/hooks.ts";

api.initialize();

// Renders flow as in an app (scheduled by React), not batched by act().
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;

// ---------------------------------------------------------------------------------------
// Harness

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
async function step(name: string, body: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("step timed out after 30 s")), 30_000);
  });
  try {
    await Promise.race([body(), timeout]);
  } catch (e) {
    failed++;
    console.log(`FAIL  ${name}: unexpected ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  } finally {
    clearTimeout(timer);
  }
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
async function eventually(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(5);
  }
  return cond();
}

class MapTokenStore implements TokenStore {
  value: string | undefined;
  load(): string | undefined {
    return this.value;
  }
  save(value: string): void {
    this.value = value;
  }
  clear(): void {
    this.value = undefined;
  }
}


/** A PNG of random pixels (incompressible, so the upload has a body worth watching). */
function randomPng(w: number, h: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (kind: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(kind, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const rows: Buffer[] = [];
  for (let y = 0; y < h; y++) rows.push(Buffer.concat([Buffer.from([0]), randomBytes(3 * w)]));
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// ---------------------------------------------------------------------------------------
// A client that counts its listener registrations, as the hooks' cleanup is what is
// under test: live registrations, and listener calls that arrive after `cancel()`.

class CountingClient {
  live = 0;
  added = 0;
  lateCalls = 0;
  readonly client: TetherClientLike;

  constructor(private readonly inner: TetherClient) {
    const self = this;
    this.client = new Proxy(inner, {
      get(target, prop) {
        if (prop === "addAuthListener") {
          return (listener: AuthListener) => {
            const sub = self.track((gone) =>
              target.addAuthListener({
                onStateChanged: (s: AuthState) => (gone() ? self.lateCalls++ : listener.onStateChanged(s)),
                onSessionRefreshed: (u: string) => (gone() ? self.lateCalls++ : listener.onSessionRefreshed(u)),
              }),
            );
            return sub;
          };
        }
        if (prop === "addQuotaListener") {
          return (listener: QuotaListener) =>
            self.track((gone) =>
              target.addQuotaListener({
                onQuotaChanged: (s: QuotaState) => (gone() ? self.lateCalls++ : listener.onQuotaChanged(s)),
                onPaywall: (p: string, s: QuotaState) => (gone() ? self.lateCalls++ : listener.onPaywall(p, s)),
              }),
            );
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as TetherClientLike;
  }

  private track(register: (gone: () => boolean) => SubscriptionLike): SubscriptionLike {
    let cancelled = false;
    const sub = register(() => cancelled);
    this.live++;
    this.added++;
    return {
      cancel: () => {
        if (!cancelled) {
          cancelled = true;
          this.live--;
        }
        sub.cancel();
      },
      uniffiDestroy: () => (sub as { uniffiDestroy?: () => void }).uniffiDestroy?.(),
    } as SubscriptionLike;
  }

  get raw(): TetherClient {
    return this.inner;
  }
}

// ---------------------------------------------------------------------------------------
// The screen under test: every hook, recording what each render saw.

type Seen = {
  renders: number;
  auth?: AuthState;
  quota?: QuotaHook;
  chat?: ChatHook;
  upload?: UploadHook;
  streamed: string[];
  progress: number[];
};

function Screen(props: { client: TetherClientLike; conversationId: string; seen: Seen }) {
  const { seen } = props;
  seen.renders++;
  seen.auth = useAuthState(props.client);
  seen.quota = useQuota(props.client);
  seen.chat = useChat(props.client, props.conversationId);
  seen.upload = useUpload(props.client);
  const text = seen.chat.streaming?.text;
  if (text !== undefined && text !== seen.streamed.at(-1)) seen.streamed.push(text);
  const sent = seen.upload.progress?.sent;
  if (sent !== undefined && sent !== seen.progress.at(-1)) seen.progress.push(sent);
  return null;
}

// ---------------------------------------------------------------------------------------

async function run(server: ContractServer, dataDir: string): Promise<void> {
  const config = ClientConfig.create({
    baseUrl: server.url,
    clientId: "rn-hooks-test",
    dataDir,
    retry: RetryPolicy.create({ maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 200, maxRetryAfterS: 2 }),
  });
  const counting = new CountingClient(new TetherClient(config, new MapTokenStore()));
  const client = counting.raw;
  await client.restoreSession();
  const conversation = await client.createConversation("hooks", undefined);

  const seen: Seen = { renders: 0, streamed: [], progress: [] };
  const renderer: ReactTestRenderer = TestRenderer.create(
    createElement(Screen, { client: counting.client, conversationId: conversation.id, seen }),
  );

  await step("mount", async () => {
    check("the screen rendered", await eventually(() => seen.renders > 0 && seen.chat?.loading === false));
    check("two listener registrations (auth, quota)", counting.live === 2, () => `live=${counting.live}`);
    check("useAuthState: SignedOut before sign-in", seen.auth?.tag === "SignedOut", () => `${seen.auth?.tag}`);
  });

  await step("useAuthState follows sign-in", async () => {
    const user = await client.signInAnonymously(undefined);
    check(
      "useAuthState: SignedIn as the new user",
      await eventually(() => seen.auth?.tag === "SignedIn" && (seen.auth.inner as { userId: string }).userId === user.id),
      () => `${seen.auth?.tag}`,
    );
  });

  await step("useChat streams a reply, then shows the stored one", async () => {
    const pieces = Array.from({ length: 12 }, (_, i) => `part${i} `);
    await server.admin("chat-script", { pieces, delay_ms: 40 });
    const reply = await seen.chat!.send("hello from a hook");
    const whole = pieces.join("");
    check("send resolves with the stored reply, Complete", reply?.status === MessageStatus.Complete && reply.content === whole, () => `${reply?.status}`);
    const grew = seen.streamed.every((t, i) => whole.startsWith(t) && (i === 0 || t.length > seen.streamed[i - 1]!.length));
    check(
      "the streaming text grew in renders (3+ sizes, each a prefix of the reply)",
      seen.streamed.length >= 3 && grew,
      () => JSON.stringify(seen.streamed),
    );
    check(
      "then the history shows the user's message and the reply, and no streaming bubble",
      await eventually(() => {
        const m = seen.chat!.messages;
        return !seen.chat!.sending && seen.chat!.streaming === undefined && m.length === 2 &&
          m[0]!.content === "hello from a hook" && m[1]!.content === whole && m[1]!.status === MessageStatus.Complete;
      }),
      () => JSON.stringify(seen.chat!.messages.map((m) => [m.content, m.status])),
    );
  });

  await step("useChat cancel stops the reply (stored Cancelled)", async () => {
    await server.admin("chat-script", { repeat: ["word ", 2000], delay_ms: 5 });
    seen.streamed = [];
    const p = seen.chat!.send("a long one");
    check("the reply starts streaming", await eventually(() => (seen.chat!.streaming?.text.length ?? 0) > 0));
    seen.chat!.cancel();
    const r = await p;
    check("send resolves undefined, with no error", r === undefined && seen.chat!.error === undefined, () => `${seen.chat!.error}`);
    check(
      "the history shows the reply Cancelled with its partial text",
      await eventually(() => {
        const last = seen.chat!.messages.at(-1);
        return !seen.chat!.sending && last?.status === MessageStatus.Cancelled && last.content.length > 0 &&
          last.content.length < 10_000;
      }),
      () => JSON.stringify(seen.chat!.messages.at(-1)?.status),
    );
  });

  const photo = join(dataDir, "photo.png");
  writeFileSync(photo, randomPng(1000, 700));

  await step("useUpload reports progress and the detection", async () => {
    await server.admin("fault", { path: "/api/v1/detect", kind: "slow-upload", ms: 100 });
    seen.progress = [];
    const d = await seen.upload!.detect(new ImageSource.File({ path: photo }));
    check("detect resolves with the server's detection", d?.objects[0]?.label === "cat", () => JSON.stringify(d?.objects));
    const last = seen.upload!.progress;
    // Loopback socket buffers take a 2 MB body at once: the sender reports its start and its
    // end only, close together, and React may render just the last. Progress rendered while
    // an upload is in flight is checked on the slow upload below.
    check(
      "progress rendered, never falling, ending at the whole body (fraction 1)",
      seen.progress.length >= 1 && seen.progress.every((s, i) => i === 0 || s > seen.progress[i - 1]!) &&
        last !== undefined && last.sent === last.total && last.total > 2_000_000 && last.fraction === 1,
      () => `${JSON.stringify(seen.progress)} ${JSON.stringify(last)}`,
    );
    check("result set, not uploading, no error", await eventually(() => seen.upload!.result !== undefined && !seen.upload!.uploading && seen.upload!.error === undefined));
  });

  await step("useUpload cancel stops a slow upload", async () => {
    await server.admin("fault", { path: "/api/v1/detect", kind: "slow-upload", ms: 400 });
    const before = ((await server.admin("uploads")).uploads as unknown[]).length;
    const p = seen.upload!.detect(new ImageSource.File({ path: photo }));
    // The server reads one frame per 400 ms: the call cannot end before the cancel below.
    check(
      "progress renders while the upload is in flight (sent > 0, fraction > 0)",
      await eventually(() => seen.upload!.uploading && (seen.upload!.progress?.sent ?? 0) > 0 && seen.upload!.progress!.fraction > 0),
    );
    seen.upload!.cancel();
    const r = await p;
    check("detect resolves undefined; cancelled, no error, no result", r === undefined && (await eventually(() =>
      seen.upload!.cancelled && seen.upload!.error === undefined && seen.upload!.result === undefined && !seen.upload!.uploading)));
    await sleep(500);
    const after = ((await server.admin("uploads")).uploads as unknown[]).length;
    check("nothing was charged for the cancelled upload", after === before, () => `${before} -> ${after}`);
  });

  await step("useQuota raises the paywall on a 402, lowers it after a purchase", async () => {
    const jobs = ApiRequest.create({ method: HttpMethod.Post, path: "jobs", jsonBody: JSON.stringify({ kind: "transcribe", input: {} }) });
    await client.send(ApiRequest.create({ method: HttpMethod.Get, path: "quota" }), undefined);
    check("useQuota: the plan from the server (free)", await eventually(() => seen.quota?.quota.plan === "free"), () => `${seen.quota?.quota.plan}`);
    check("no paywall yet", seen.quota?.paywall === undefined);
    await server.admin("quota-limit", { limit: 1 });
    let err: unknown;
    try {
      await client.send(jobs, undefined);
    } catch (e) {
      err = e;
    }
    check("a metered call -> PlanRequired", TetherError.instanceOf(err) && TetherError.PlanRequired.instanceOf(err), () => String(err));
    check("useQuota: paywall \"pro\" (the flag is up)", await eventually(() => seen.quota?.paywall === "pro"), () => `${seen.quota?.paywall}`);
    await server.admin("plan", { plan: "pro", limit: 5000 });
    const q = await seen.quota!.refresh();
    check("refresh() after the purchase -> plan pro", q.plan === "pro");
    check("useQuota: paywall lowered, plan pro", await eventually(() => seen.quota?.paywall === undefined && seen.quota?.quota.plan === "pro"));
  });

  await step("unmount disposes every subscription and aborts a streaming reply", async () => {
    await server.admin("chat-script", { repeat: ["more ", 2000], delay_ms: 5 });
    void seen.chat!.send("one more long one");
    check("a reply is streaming", await eventually(() => (seen.chat!.streaming?.text.length ?? 0) > 0));
    const streamingId = seen.chat!.streaming!.messageId;
    renderer.unmount();
    // React runs effect cleanups just after the unmount commits, as in an app.
    check(
      "no live listener registration after unmount",
      (await eventually(() => counting.live === 0)) && counting.added >= 2,
      () => `live=${counting.live} added=${counting.added}`,
    );
    const renders = seen.renders;
    // Events the listeners would hear: a token refresh, a sign-out, quota changes.
    await server.admin("plan", { plan: "free", limit: 50 });
    await client.refreshQuota(undefined);
    await client.signOut();
    await sleep(300);
    check("no listener call after unmount", counting.lateCalls === 0, () => `late calls=${counting.lateCalls}`);
    check("no render after unmount", seen.renders === renders, () => `${seen.renders - renders} renders`);
    let stored: string | undefined;
    check(
      "the reply streaming at unmount is stored Cancelled (the call was aborted)",
      await eventually(() => {
        void client.getMessage(streamingId).then((m) => (stored = m ? MessageStatus[m.status] : undefined));
        return stored === "Cancelled";
      }),
      () => `${stored}`,
    );
  });

  client.uniffiDestroy();
}

async function main(): Promise<void> {
  const binary = process.argv[2];
  if (!binary) throw new Error("usage: hooks.test.tsx <path to the tether binary>");
  const dataDir = mkdtempSync(join(tmpdir(), "tether-rn-hooks-"));
  let server: ContractServer | undefined;
  try {
    server = await ContractServer.start(binary);
    await run(server, dataDir);
  } catch (e) {
    failed++;
    console.log(`FAIL  aborted: ${e instanceof Error ? e.stack : String(e)}`);
  } finally {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

await main();
