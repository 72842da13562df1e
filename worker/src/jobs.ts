// Long-running jobs: POST /jobs stores a D1 row and enqueues a message;
// the queue consumer (same Worker) runs it and records the result.
import { config } from "./config";
import type { Env, JobMessage } from "./env";
import { badRequest, invalidInput, notFound } from "./errors";
import { logEvent } from "./log";
import { standinTranscript } from "./standin/ai";
import { newId } from "./util";

/** The kinds this backend runs. */
export const JOB_KINDS = ["transcribe"] as const;
const MAX_ATTEMPTS = 3;
const MAX_MEDIA_BYTES = 25 * 1024 * 1024;

export interface JobInput {
  kind: string;
  input: Record<string, unknown>;
}

/** `transcribe` names its media by `url` (or `media_url` / `media`). */
function mediaOf(input: Record<string, unknown>): string | null {
  for (const k of ["url", "media_url", "media"]) {
    const v = input[k];
    if (typeof v === "string" && v.trim() !== "") return v;
  }
  return null;
}

export function validateJob(body: Record<string, unknown>): JobInput {
  if (typeof body.kind !== "string" || body.kind === "") throw badRequest("kind is required");
  if (!body.input || typeof body.input !== "object" || Array.isArray(body.input)) throw badRequest("input must be a JSON object");
  if (!(JOB_KINDS as readonly string[]).includes(body.kind)) {
    throw invalidInput(`Unknown job kind "${body.kind}"; this backend runs: ${JOB_KINDS.join(", ")}`);
  }
  const input = body.input as Record<string, unknown>;
  if (body.kind === "transcribe" && !mediaOf(input)) throw invalidInput("transcribe needs input.url naming the media");
  return { kind: body.kind, input };
}

export async function createJob(env: Env, tenant: string, userId: string, job: JobInput, requestId: string): Promise<{ job_id: string; status: "queued" }> {
  const id = newId("j");
  const now = new Date().toISOString();
  await env.DB.prepare(
    "INSERT INTO jobs (tenant, id, user_id, kind, input, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
  )
    .bind(tenant, id, userId, job.kind, JSON.stringify(job.input), now, now)
    .run();
  try {
    await env.JOBS.send({ tenant, jobId: id, requestId } satisfies JobMessage);
  } catch (e) {
    await env.DB.prepare("DELETE FROM jobs WHERE tenant = ? AND id = ?").bind(tenant, id).run();
    throw e;
  }
  return { job_id: id, status: "queued" };
}

interface JobRow {
  id: string;
  user_id: string;
  kind: string;
  input: string;
  status: string;
  result: string | null;
  error: string | null;
}

export async function getJob(env: Env, tenant: string, userId: string, id: string) {
  const row = await env.DB.prepare("SELECT id, user_id, kind, input, status, result, error FROM jobs WHERE tenant = ? AND id = ?")
    .bind(tenant, id)
    .first<JobRow>();
  // Another user's job is "not found", not "forbidden": ids are not confirmed.
  if (!row || row.user_id !== userId) throw notFound("No such job");
  return {
    job_id: row.id,
    kind: row.kind,
    status: row.status,
    result: row.result ? JSON.parse(row.result) : null,
    error: row.error ? JSON.parse(row.error) : null,
  };
}

async function setStatus(env: Env, tenant: string, id: string, status: string, result: unknown = null, error: unknown = null) {
  await env.DB.prepare("UPDATE jobs SET status = ?, result = ?, error = ?, attempts = attempts + ?, updated_at = ? WHERE tenant = ? AND id = ?")
    .bind(status, result === null ? null : JSON.stringify(result), error === null ? null : JSON.stringify(error), status === "running" ? 1 : 0, new Date().toISOString(), tenant, id)
    .run();
}

async function transcribe(env: Env, input: Record<string, unknown>): Promise<Record<string, unknown>> {
  const media = mediaOf(input)!;
  if (config.aiStandin(env)) return standinTranscript(media);
  if (!/^https:\/\//.test(media)) throw new Error("media must be an https URL");
  const res = await fetch(media);
  if (!res.ok) throw new Error(`media fetch answered ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.byteLength > MAX_MEDIA_BYTES) throw new Error("media too large");
  const out = (await env.AI!.run("@cf/openai/whisper", { audio: [...bytes] })) as { text?: string };
  return { text: out.text ?? "", model: "@cf/openai/whisper" };
}

export async function consumeJobs(batch: MessageBatch<JobMessage>, env: Env): Promise<void> {
  for (const msg of batch.messages) {
    const { tenant, jobId, requestId } = msg.body;
    const started = Date.now();
    const row = await env.DB.prepare("SELECT id, user_id, kind, input, status, result, error FROM jobs WHERE tenant = ? AND id = ?")
      .bind(tenant, jobId)
      .first<JobRow>();
    if (!row || row.status === "succeeded" || row.status === "failed") {
      msg.ack(); // already done (queues deliver at least once)
      continue;
    }
    try {
      await setStatus(env, tenant, jobId, "running");
      const input = JSON.parse(row.input) as Record<string, unknown>;
      const result = row.kind === "transcribe" ? await transcribe(env, input) : null;
      await setStatus(env, tenant, jobId, "succeeded", result);
      msg.ack();
      logEvent({ msg: "job", request_id: requestId, tenant, job_id: jobId, kind: row.kind, status: "succeeded", duration_ms: Date.now() - started });
    } catch (e) {
      if (msg.attempts >= MAX_ATTEMPTS) {
        await setStatus(env, tenant, jobId, "failed", null, { code: "internal", message: String(e) });
        msg.ack();
      } else {
        await setStatus(env, tenant, jobId, "queued");
        msg.retry({ delaySeconds: 2 * msg.attempts });
      }
      logEvent({ msg: "job", request_id: requestId, tenant, job_id: jobId, kind: row.kind, status: "error", attempt: msg.attempts, error: String(e) });
    }
  }
}
