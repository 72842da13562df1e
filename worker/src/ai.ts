// Inference: Workers AI through the AI binding (or its stand-in), with the
// Worker's own deadline and the OpenAI-compatible fallback.
//
// Provider names in replies (X-Provider header, `provider` field):
//   "workers-ai" | "standin" | "fallback"
import { config } from "./config";
import type { Env } from "./env";
import { deadlineExceeded, upstream } from "./errors";
import { fallbackChat, fallbackConfigured, fallbackImage, fallbackModel, fallbackVision } from "./fallback";
import { imageInfo, type ImageInfo } from "./imageinfo";
import { logEvent } from "./log";
import { sseData, type ChatEvent } from "./sse";
import { standinChat, standinImage, standinVision, type ChatMessage } from "./standin/ai";
import { b64 as toB64, DeadlineError, withDeadline } from "./util";

export const CHAT_MODEL = "@cf/meta/llama-3.1-8b-instruct";
export const VISION_MODEL = "@cf/llava-hf/llava-1.5-7b-hf";
export const IMAGE_MODEL = "@cf/black-forest-labs/flux-1-schnell";

export type Provider = "workers-ai" | "standin" | "fallback";

const primaryName = (env: Env): Provider => (config.aiStandin(env) ? "standin" : "workers-ai");

class Unusable extends Error {}

function aiBinding(env: Env) {
  if (!env.AI) throw new Error("AI binding is not configured");
  return env.AI;
}

/** Workers AI streaming chat: its SSE bytes, parsed into events. */
async function* workersAiChat(env: Env, messages: ChatMessage[], maxTokens: number): AsyncGenerator<ChatEvent> {
  const out = await aiBinding(env).run(CHAT_MODEL, { messages, max_tokens: maxTokens, stream: true });
  if (!(out instanceof ReadableStream)) throw new Unusable("Workers AI returned no stream");
  for await (const data of sseData(out as ReadableStream<Uint8Array>)) {
    if (data === "[DONE]") return;
    const j = JSON.parse(data) as { response?: unknown; usage?: ChatEvent["usage"] };
    const ev: ChatEvent = { response: typeof j.response === "string" ? j.response : "" };
    if (j.usage) ev.usage = j.usage;
    yield ev;
  }
}

/**
 * Pulls events until the first non-empty text, so "nothing usable" (an error,
 * or a stream that ends without text) is known before anything is sent.
 */
async function prime(it: AsyncIterator<ChatEvent>): Promise<ChatEvent[]> {
  const first: ChatEvent[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) throw new Unusable("model returned no text");
    first.push(r.value);
    if (r.value.response !== "") return first;
  }
}

export interface OpenChat {
  provider: Provider;
  model: string;
  first: ChatEvent[];
  rest: AsyncIterator<ChatEvent>;
}

/**
 * Starts a chat completion. The deadline covers everything up to the first
 * text; after that the stream runs (with keep-alives) until the model ends.
 */
export async function openChat(env: Env, messages: ChatMessage[], maxTokens: number, requestId: string): Promise<OpenChat> {
  const deadline = Date.now() + config.aiDeadlineMs(env);
  const primary = primaryName(env);
  try {
    const it =
      primary === "standin"
        ? standinChat(messages, config.standinChatDelayMs(env), config.aiDeadlineMs(env) + 1000)
        : workersAiChat(env, messages, maxTokens);
    const first = await withDeadline(prime(it), deadline - Date.now());
    return { provider: primary, model: CHAT_MODEL, first, rest: it };
  } catch (e) {
    if (e instanceof DeadlineError) throw deadlineExceeded("The model", 2);
    if (!fallbackConfigured(env)) throw upstream("The model failed and no fallback provider is configured");
    logEvent({ msg: "fallback", request_id: requestId, route: "chat", reason: String(e) });
  }
  try {
    const it = fallbackChat(env, messages, maxTokens, requestId);
    const first = await withDeadline(prime(it), deadline - Date.now());
    return { provider: "fallback", model: fallbackModel(env), first, rest: it };
  } catch (e) {
    if (e instanceof DeadlineError) throw deadlineExceeded("The fallback model", 2);
    throw upstream("Both the model and the fallback provider failed");
  }
}

/** Runs a one-shot call on the primary provider, then the fallback, within one deadline. */
async function withFallback(
  env: Env,
  requestId: string,
  route: string,
  primary: () => Promise<string>,
  fallback: () => Promise<string>,
): Promise<{ text: string; provider: Provider }> {
  const deadline = Date.now() + config.aiDeadlineMs(env);
  try {
    const text = await withDeadline(primary(), deadline - Date.now());
    if (text) return { text, provider: primaryName(env) };
    throw new Unusable("empty answer");
  } catch (e) {
    if (e instanceof DeadlineError) throw deadlineExceeded("The model", 2);
    if (!fallbackConfigured(env)) throw upstream("The model failed and no fallback provider is configured");
    logEvent({ msg: "fallback", request_id: requestId, route, reason: String(e) });
  }
  try {
    const text = await withDeadline(fallback(), deadline - Date.now());
    if (text) return { text, provider: "fallback" };
  } catch (e) {
    if (e instanceof DeadlineError) throw deadlineExceeded("The fallback model", 2);
  }
  throw upstream("Both the model and the fallback provider failed");
}

export async function vision(
  env: Env,
  image: { bytes: Uint8Array; type: string },
  info: ImageInfo,
  prompt: string,
  requestId: string,
): Promise<{ response: string; model: string; provider: Provider }> {
  const r = await withFallback(
    env,
    requestId,
    "vision",
    async () => {
      if (config.aiStandin(env)) return standinVision(info, prompt, config.aiDeadlineMs(env) + 1000);
      const out = (await aiBinding(env).run(VISION_MODEL, { image: [...image.bytes], prompt, max_tokens: 512 })) as {
        description?: unknown;
      };
      return typeof out?.description === "string" ? out.description.trim() : "";
    },
    () => fallbackVision(env, image, prompt, requestId),
  );
  return { response: r.text, model: r.provider === "fallback" ? fallbackModel(env) : VISION_MODEL, provider: r.provider };
}

export async function generateImage(
  env: Env,
  prompt: string,
  width: number,
  height: number,
  requestId: string,
): Promise<{ image: string; model: string; provider: Provider }> {
  const r = await withFallback(
    env,
    requestId,
    "images",
    async () => {
      if (config.aiStandin(env)) return standinImage(prompt, config.aiDeadlineMs(env) + 1000);
      // Flux Schnell takes a prompt and a step count (max 8); it answers
      // { image: base64 } at its own size.
      const out = (await aiBinding(env).run(IMAGE_MODEL, { prompt, steps: 4 })) as { image?: unknown };
      return typeof out?.image === "string" ? out.image : "";
    },
    () => fallbackImage(env, prompt, width, height, requestId),
  );
  return {
    image: await asContractPng(env, r.text, width, height),
    model: r.provider === "fallback" ? (env.FALLBACK_MODEL || "gpt-image-1") : IMAGE_MODEL,
    provider: r.provider,
  };
}

/**
 * The contract promises a base64 PNG of the requested (clamped) size. Flux Schnell answers
 * a JPEG at its own size, so its output goes through the Images binding (resize to cover
 * the requested box, PNG out); a PNG that already fits is passed through untouched.
 */
async function asContractPng(env: Env, image: string, width: number, height: number): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(image), (c) => c.charCodeAt(0));
  } catch {
    throw upstream("The image model answered something that is not base64");
  }
  const info = imageInfo(bytes);
  if (info?.format === "png" && info.width === width && info.height === height) return image;
  if (!info) throw upstream("The image model answered something that is not an image");
  if (!env.IMAGES) throw upstream("The image model answered a non-PNG image and no Images binding is configured to convert it");
  try {
    const out = await env.IMAGES.input(new Blob([bytes]).stream())
      .transform({ width, height, fit: "cover" })
      .output({ format: "image/png" });
    return toB64(new Uint8Array(await out.response().arrayBuffer()));
  } catch (e) {
    throw upstream(`Could not convert the generated image to PNG: ${String(e).slice(0, 200)}`);
  }
}
