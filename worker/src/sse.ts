// Server-sent events in the Workers AI shape:
//   data: {"response":"Hel"}\n\n ... data: {"response":"","usage":{...}}\n\n data: [DONE]\n\n
// plus ": keep-alive" comments while the model is silent, and an
// `event: error` event (contract error body) if the source breaks mid-way.

export interface ChatEvent {
  response: string;
  usage?: { prompt_tokens: number; completion_tokens: number };
}

const enc = new TextEncoder();

/** Parses an SSE byte stream into the `data:` payloads of its events (WHATWG rules, simplified to what models send). */
export async function* sseData(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += value;
      const lines = buf.split(/\r\n|\r|\n/);
      buf = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        }
      }
    }
    if (buf.startsWith("data:")) data.push(buf.slice(5).replace(/^ /, ""));
    if (data.length) yield data.join("\n");
  } finally {
    reader.releaseLock();
  }
}

/**
 * Encodes chat events as the client-facing SSE stream. `first` holds events
 * already pulled (to decide whether the provider was usable); the rest come
 * from `rest`. Keep-alive comments go out whenever nothing arrived for
 * keepaliveMs.
 */
export function encodeChatStream(
  first: ChatEvent[],
  rest: AsyncIterator<ChatEvent>,
  keepaliveMs: number,
  onError: (e: unknown) => { code: string; message: string },
): ReadableStream<Uint8Array> {
  let pending: Promise<IteratorResult<ChatEvent>> | null = null;
  let finished = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const ev of first) controller.enqueue(enc.encode(`data: ${JSON.stringify(ev)}\n\n`));
    },
    async pull(controller) {
      if (finished) return;
      pending ??= rest.next();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const tick = new Promise<"tick">((r) => (timer = setTimeout(() => r("tick"), keepaliveMs)));
      try {
        const r = await Promise.race([pending, tick]);
        if (r === "tick") {
          controller.enqueue(enc.encode(": keep-alive\n\n"));
          return;
        }
        pending = null;
        if (r.done) {
          finished = true;
          controller.enqueue(enc.encode("data: [DONE]\n\n"));
          controller.close();
          return;
        }
        controller.enqueue(enc.encode(`data: ${JSON.stringify(r.value)}\n\n`));
      } catch (e) {
        finished = true;
        controller.enqueue(enc.encode(`event: error\ndata: ${JSON.stringify({ error: onError(e) })}\n\n`));
        controller.close();
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    },
    async cancel() {
      finished = true;
      await rest.return?.(undefined);
    },
  });
}
