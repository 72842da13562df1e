/*
 * `scripts/bench ffi`, the TypeScript line (run by bindings/node/bench.sh):
 * ffi/ts_stream_10k_crossings, the `onDelta` calls a TypeScript ChatListener gets while a
 * 10,000-delta reply streams over about 5 s from a loopback `tether serve`, through the
 * TypeScript API ubrn generates (N-API flavour, the API React Native uses through JSI)
 * against the release libtether.so. The stream is the one of the Kotlin figures
 * (android/src/jvmBench/.../FfiBench.kt): the pieces `tok0 ` .. `tok9999 `, cut into 120-byte
 * chunks, 1 ms before each. Target <= 330 (one per 16 ms frame). One warm-up stream, then
 * the median of 3; per-round crossings and wall times on stderr.
 *
 *   npx tsx bench/ffi-stream.ts <tether binary>
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { ContractServer } from "../test/contract-server.ts";
import {
  ClientConfig,
  TetherClient,
  TetherError,
  type ChatListener,
  type Message,
  type TokenStore,
} from "../generated-bench/index.ts";

const pieces = Array.from({ length: 10_000 }, (_, i) => `tok${i} `);
const script = { pieces, chunk_sizes: [120], delay_ms: 1 };
const fullText = pieces.join("");

class MemoryStore implements TokenStore {
  value: string | undefined = undefined;
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

class Counting implements ChatListener {
  deltas = 0;
  onDelta(_messageId: string, _text: string): void {
    this.deltas++;
  }
  onComplete(_message: Message): void {}
  onError(_messageId: string, _error: TetherError): void {}
}

async function main(): Promise<void> {
  const binary = process.argv[2];
  if (!binary) throw new Error("usage: ffi-stream.ts <tether binary>");
  const server = await ContractServer.start(binary);
  const url = server.url;
  const admin = (command: string, body: object) => server.admin(command, body);

  await admin("quota-limit", { limit: 1_000_000 });
  const dataDir = mkdtempSync(join(tmpdir(), "tether-ffi-ts-"));
  const client = new TetherClient(ClientConfig.create({ baseUrl: url, clientId: "ffi-bench", dataDir }), new MemoryStore());
  await client.restoreSession();
  await client.signInAnonymously();
  const conv = await client.createConversation("ffi", undefined);
  const crossings: number[] = [];
  for (let round = 0; round <= 3; round++) {
    await admin("chat-script", script);
    const l = new Counting();
    const t = performance.now();
    const reply = await client.sendMessage(conv.id, "go", undefined, l);
    const ms = performance.now() - t;
    if (reply.content !== fullText) throw new Error(`the reply is ${reply.content.length} chars`);
    console.error(`[ffi-bench] ts stream round ${round}${round === 0 ? " (warm-up)" : ""}: ${(ms / 1000).toFixed(3)} s, ${l.deltas} onDelta`);
    if (round > 0) crossings.push(l.deltas);
  }
  client.uniffiDestroy();
  await server.close();
  const median = [...crossings].sort((a, b) => a - b)[Math.floor(crossings.length / 2)]!;
  console.log(`bench ffi/ts_stream_10k_crossings value=${median} unit=count target=<=330 ok=${median <= 330}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
