// STAND-IN for Workers AI (AI_MODE="standin"). Workers AI cannot run
// offline, so locally and in tests these deterministic functions answer in
// its exact shapes. Everything around them (quota, idempotency, deadlines,
// fallback, SSE encoding) is the same code as in production.
//
// Test triggers (stand-in only, like a payment sandbox's test card numbers):
// a prompt containing
//   "standin:fail"  -> the model call throws        (exercises fallback)
//   "standin:empty" -> the model returns no text    (exercises fallback)
//   "standin:slow"  -> the model stalls past the deadline (exercises 408)
//   "standin:break" -> the stream breaks after a few words (exercises event: error)
import type { ChatEvent } from "../sse";
import type { ImageInfo } from "../imageinfo";
import { FLUX_SAMPLE_JPEG_B64 } from "./flux-sample";
import { sleep } from "../util";

export type Trigger = "fail" | "empty" | "slow" | "break" | null;

export function triggerIn(text: string): Trigger {
  if (text.includes("standin:fail")) return "fail";
  if (text.includes("standin:empty")) return "empty";
  if (text.includes("standin:slow")) return "slow";
  if (text.includes("standin:break")) return "break";
  return null;
}

async function obey(trigger: Trigger, stallMs: number): Promise<void> {
  if (trigger === "fail") throw new Error("stand-in model failure (standin:fail)");
  if (trigger === "slow") await sleep(stallMs);
}

export interface ChatMessage {
  role: string;
  content: string;
}

export function standinReply(messages: ChatMessage[]): string {
  const last = [...messages].reverse().find((m) => m.role === "user")?.content ?? "";
  const words = last.trim().split(/\s+/).filter(Boolean).length;
  return `This is the Tether stand-in model. You sent ${words} word${words === 1 ? "" : "s"}: "${last.slice(0, 200)}".`;
}

/** Word-by-word events with a delay between them, like a streaming model. */
export async function* standinChat(messages: ChatMessage[], delayMs: number, stallMs: number): AsyncGenerator<ChatEvent> {
  const all = messages.map((m) => m.content).join("\n");
  const trigger = triggerIn(all);
  await obey(trigger, stallMs);
  if (trigger === "empty") return;
  const reply = standinReply(messages);
  const pieces = reply.match(/\S+\s*/g) ?? [];
  for (const [i, piece] of pieces.entries()) {
    if (delayMs > 0) await sleep(delayMs);
    if (trigger === "break" && i === 3) throw new Error("stand-in stream broke (standin:break)");
    yield { response: piece };
  }
  const promptTokens = all.split(/\s+/).filter(Boolean).length;
  yield { response: "", usage: { prompt_tokens: promptTokens, completion_tokens: pieces.length } };
}

export async function standinVision(image: ImageInfo, prompt: string, stallMs: number): Promise<string> {
  const trigger = triggerIn(prompt);
  await obey(trigger, stallMs);
  if (trigger === "empty") return "";
  return `Stand-in vision answer: a ${image.width}x${image.height} ${image.format.toUpperCase()} image. You asked: "${prompt.slice(0, 200)}".`;
}

/** A real PNG of the asked size, coloured from a hash of the prompt. */
/** Like Flux Schnell: a JPEG at the model's own size, whatever size was asked for. */
export async function standinImage(prompt: string, stallMs: number): Promise<string> {
  const trigger = triggerIn(prompt);
  await obey(trigger, stallMs);
  if (trigger === "empty") return "";
  return FLUX_SAMPLE_JPEG_B64;
}

export function standinTranscript(media: string): Record<string, unknown> {
  return { text: `Stand-in transcript of ${media}.`, language: "en", duration_seconds: 0, model: "standin-whisper" };
}
