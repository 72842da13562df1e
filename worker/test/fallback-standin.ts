// A small local stand-in of an OpenAI-compatible endpoint (runs in Node,
// wired as Miniflare's outboundService in vitest.config.ts). It answers
// /v1/chat/completions (streaming and not) and /v1/images/generations, and
// checks the bearer key the Worker must send.

const PNG_1x1 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

export async function fallbackStandin(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.host !== "fallback.test") return new Response("no network in tests", { status: 502 });
  if (request.headers.get("Authorization") !== "Bearer test-fallback-key") {
    return Response.json({ error: { message: "bad key" } }, { status: 401 });
  }
  const body = (await request.json()) as Record<string, unknown>;
  if (url.pathname === "/v1/chat/completions") {
    if (body.stream) {
      const words = ["Fallback ", "says ", "hello."];
      const events = [
        ...words.map((w) => ({ choices: [{ delta: { content: w } }] })),
        { choices: [], usage: { prompt_tokens: 3, completion_tokens: 3 } },
      ];
      const text = events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("") + "data: [DONE]\n\n";
      return new Response(text, { headers: { "Content-Type": "text/event-stream" } });
    }
    return Response.json({ choices: [{ message: { role: "assistant", content: "Fallback vision answer." } }] });
  }
  if (url.pathname === "/v1/images/generations") {
    return Response.json({ data: [{ b64_json: PNG_1x1 }] });
  }
  return new Response("not found", { status: 404 });
}
