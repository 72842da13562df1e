// Jobs through the Queue producer and consumer.
import { describe, expect, it } from "vitest";
import { api, freshTenant, postJson, quota, signIn, uuid } from "./helpers";

type Job = { job_id: string; status: string; result: Record<string, unknown> | null; error: unknown };

async function waitForJob(tenant: string, token: string, id: string): Promise<Job> {
  for (let i = 0; i < 100; i++) {
    const r = await api(`/jobs/${id}`, { tenant, token });
    expect(r.status).toBe(200);
    const j = (await r.json()) as Job;
    if (j.status === "succeeded" || j.status === "failed") return j;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error("job did not finish");
}

describe("jobs", () => {
  it("queues a transcribe job (202) and the consumer completes it", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/jobs", { tenant, token: s.access_token, key: uuid() }, { kind: "transcribe", input: { url: "https://example.com/talk.m4a" } });
    expect(res.status).toBe(202);
    const created = (await res.json()) as { job_id: string; status: string };
    expect(created.status).toBe("queued");
    expect(created.job_id).toMatch(/^j_/);
    const done = await waitForJob(tenant, s.access_token, created.job_id);
    expect(done.status).toBe("succeeded");
    expect(done.error).toBeNull();
    expect(String(done.result!.text)).toContain("https://example.com/talk.m4a");
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });

  it("a retried POST /jobs with the same key returns the same job", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const body = { kind: "transcribe", input: { url: "https://example.com/a.mp3" } };
    const a = (await (await postJson("/jobs", { tenant, token: s.access_token, key }, body)).json()) as { job_id: string };
    const b = await postJson("/jobs", { tenant, token: s.access_token, key }, body);
    expect(b.status).toBe(202);
    expect(((await b.json()) as { job_id: string }).job_id).toBe(a.job_id);
  });

  it("422 invalid_input for an unknown kind", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/jobs", { tenant, token: s.access_token, key: uuid() }, { kind: "summarize-pdf", input: {} });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_input");
    expect((await quota(tenant, s.access_token)).remaining).toBe(50);
  });

  it("404 for unknown jobs and for other users' jobs", async () => {
    const tenant = freshTenant();
    const a = await signIn(tenant);
    const b = await signIn(tenant);
    const created = (await (await postJson("/jobs", { tenant, token: a.access_token, key: uuid() }, { kind: "transcribe", input: { url: "https://x.test/a" } })).json()) as { job_id: string };
    expect((await api(`/jobs/${created.job_id}`, { tenant, token: b.access_token })).status).toBe(404);
    expect((await api("/jobs/j_doesnotexist", { tenant, token: a.access_token })).status).toBe(404);
  });
});
