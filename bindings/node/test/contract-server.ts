/**
 * The contract test server (`tether serve`, tests/support) as a child process, and its
 * /__admin commands (listed in tests/support/src/admin.rs). Shared by the TypeScript
 * scenario, the ffi bench and the React Native hooks test, which all talk to it.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";

export class ContractServer {
  private constructor(
    private readonly proc: ChildProcessByStdio<Writable, Readable, null>,
    readonly url: string,
  ) {}

  /** Starts `binary serve` and waits for the address it prints first. */
  static async start(binary: string): Promise<ContractServer> {
    const proc = spawn(binary, ["serve"], { stdio: ["pipe", "pipe", "inherit"] });
    const lines = createInterface({ input: proc.stdout });
    const first = await new Promise<string>((resolveLine, reject) => {
      lines.once("line", resolveLine);
      proc.once("error", reject);
      proc.once("exit", (code) => reject(new Error(`tether serve exited (${code}) without printing its address`)));
    });
    lines.close();
    proc.stdout.resume(); // keep draining anything else it prints
    const m = /^listening (http:\/\/\S+)$/.exec(first.trim());
    if (!m) throw new Error(`unexpected first line from tether serve: ${first}`);
    return new ContractServer(proc, m[1]!);
  }

  /** One admin command; its JSON answer. */
  async admin(command: string, body: object = {}): Promise<Record<string, unknown>> {
    const resp = await fetch(`${this.url}/__admin/${command}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await resp.text();
    if (resp.status !== 200) throw new Error(`admin ${command} -> ${resp.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  }

  /** How many requests the server has seen on `path`. */
  async count(path: string): Promise<number> {
    const r = await this.admin("count", { path });
    if (typeof r.count !== "number") throw new Error(`no count in ${JSON.stringify(r)}`);
    return r.count;
  }

  /** Closing stdin makes the server exit (killed after 3 s if it does not). */
  async close(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.proc.once("exit", () => r()));
    this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(t);
  }
}
