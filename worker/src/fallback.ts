// The OpenAI-compatible fallback provider, asked when Workers AI fails or
// returns nothing usable. Configured by FALLBACK_URL (a base URL ending in
// e.g. /v1) and the FALLBACK_API_KEY secret; off when either is missing.
import type { Env } from "./env";
import { sseData, type ChatEvent } from "./sse";
import type { ChatMessage } from "./standin/ai";

export function fallbackConfigured(env: Env): boolean {
  return Boolean(env.FALLBACK_URL && env.FALLBACK_API_KEY);
}

function post(env: Env, path: string, body: unknown, requestId: string): Promise<Response> {
  return fetch(`${env.FALLBACK_URL!.replace(/\/+$/, "")}${path}`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${env.FALLBACK_API_KEY}`,
      "Content-Type": "application/json",
      "X-Request-ID": requestId,
    },
    body: JSON.stringify(body),
  });
}

export const fallbackModel = (env: Env) => env.FALLBACK_MODEL || "gpt-4o-mini";

export async function* fallbackChat(env: Env, messages: ChatMessage[], maxTokens: number, requestId: string): AsyncGenerator<ChatEvent> {
  const res = await post(
    env,
    "/chat/completions",
    { model: fallbackModel(env), messages, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true } },
    requestId,
  );
  if (!res.ok || !res.body) throw new Error(`fallback answered ${res.status}`);
  for await (const data of sseData(res.body)) {
    if (data === "[DONE]") return;
    const j = JSON.parse(data) as {
      choices?: Array<{ delta?: { content?: string | null } }>;
      usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
    };
    const text = j.choices?.[0]?.delta?.content ?? "";
    if (text) yield { response: text };
    if (j.usage) yield { response: "", usage: { prompt_tokens: j.usage.prompt_tokens ?? 0, completion_tokens: j.usage.completion_tokens ?? 0 } };
  }
}

export async function fallbackVision(env: Env, image: { bytes: Uint8Array; type: string }, prompt: string, requestId: string): Promise<string> {
  let s = "";
  for (let i = 0; i < image.bytes.length; i += 0x8000) s += String.fromCharCode(...image.bytes.subarray(i, i + 0x8000));
  const res = await post(
    env,
    "/chat/completions",
    {
      model: fallbackModel(env),
      max_tokens: 512,
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: prompt },
            { type: "image_url", image_url: { url: `data:${image.type};base64,${btoa(s)}` } },
          ],
        },
      ],
    },
    requestId,
  );
  if (!res.ok) throw new Error(`fallback answered ${res.status}`);
  const j = (await res.json()) as { choices?: Array<{ message?: { content?: string } }> };
  return j.choices?.[0]?.message?.content ?? "";
}

export async function fallbackImage(env: Env, prompt: string, width: number, height: number, requestId: string): Promise<string> {
  const res = await post(
    env,
    "/images/generations",
    { model: env.FALLBACK_MODEL ? env.FALLBACK_MODEL : "gpt-image-1", prompt, size: `${width}x${height}`, response_format: "b64_json", n: 1 },
    requestId,
  );
  if (!res.ok) throw new Error(`fallback answered ${res.status}`);
  const j = (await res.json()) as { data?: Array<{ b64_json?: string }> };
  return j.data?.[0]?.b64_json ?? "";
}
