// Object detection: the image goes to the detect Container (or its
// stand-in) with the request id; the Worker bounds the call with its own
// deadline, shorter than the client's, and answers a cold start that runs
// past it with 503 + Retry-After (uncharged, see idempotency.ts).
import { config } from "./config";
import type { Env } from "./env";
import { ApiError, coldStart, deadlineExceeded, invalidInput, upstream } from "./errors";
import { imageInfo } from "./imageinfo";
import { DeadlineError, withDeadline } from "./util";

export const DETR_MODEL = "@cf/facebook/detr-resnet-50";

export interface DetectOptions {
  min_score: number;
  max_objects: number;
}

export interface DetectResult {
  objects: Array<{ label: string; score: number; box: [number, number, number, number] }>;
  model: string;
  image: { width: number; height: number };
}

// One container instance per tenant: one app's load or crash does not touch another's.
export const detectInstanceName = (tenant: string) => `detect:${tenant}`;

function backend(env: Env, tenant: string): { stub: DurableObjectStub; provider: "container" | "standin" } {
  if (config.detectStandin(env)) {
    if (!env.STANDIN_DETECT) throw new ApiError(500, "internal", "STANDIN_DETECT binding missing");
    return { stub: env.STANDIN_DETECT.get(env.STANDIN_DETECT.idFromName(detectInstanceName(tenant))), provider: "standin" };
  }
  if (!env.DETECT_CONTAINER) throw new ApiError(500, "internal", "DETECT_CONTAINER binding missing");
  return { stub: env.DETECT_CONTAINER.get(env.DETECT_CONTAINER.idFromName(detectInstanceName(tenant))), provider: "container" };
}

/**
 * Without a Container binding, detect runs on Workers AI's DETR model
 * instead (boxes in pixels, converted to the contract's normalised boxes).
 */
async function detectWithWorkersAi(env: Env, image: { bytes: Uint8Array }, options: DetectOptions): Promise<DetectResult> {
  const info = imageInfo(image.bytes);
  if (!info) throw invalidInput("The image could not be decoded");
  let out: unknown;
  try {
    out = await withDeadline(env.AI!.run(DETR_MODEL, { image: [...image.bytes] }), config.aiDeadlineMs(env));
  } catch (e) {
    if (e instanceof DeadlineError) throw deadlineExceeded("The detect model", 2);
    throw upstream("The detect model failed");
  }
  const rows = (Array.isArray(out) ? out : []) as Array<{ label?: string; score?: number; box?: { xmin: number; ymin: number; xmax: number; ymax: number } }>;
  const clamp01 = (n: number) => Math.min(1, Math.max(0, Math.round(n * 10000) / 10000));
  const objects = rows
    .filter((r) => typeof r.label === "string" && typeof r.score === "number" && r.box && r.score >= options.min_score)
    .map((r) => {
      const b = r.box!;
      return {
        label: r.label!,
        score: Math.round(r.score! * 1000) / 1000,
        box: [clamp01(b.xmin / info.width), clamp01(b.ymin / info.height), clamp01((b.xmax - b.xmin) / info.width), clamp01((b.ymax - b.ymin) / info.height)] as [number, number, number, number],
      };
    })
    .sort((a, z) => z.score - a.score)
    .slice(0, options.max_objects);
  return { objects, model: DETR_MODEL, image: { width: info.width, height: info.height } };
}

export async function detect(
  env: Env,
  tenant: string,
  image: { bytes: Uint8Array; type: string },
  options: DetectOptions,
  requestId: string,
  keepAlive: (p: Promise<unknown>) => void,
): Promise<{ result: DetectResult; provider: "container" | "standin" | "workers-ai" }> {
  if (!config.detectStandin(env) && !env.DETECT_CONTAINER && env.AI) {
    return { result: await detectWithWorkersAi(env, image, options), provider: "workers-ai" };
  }
  const { stub, provider } = backend(env, tenant);
  const call = stub.fetch("http://detect/detect", {
    method: "POST",
    headers: { "Content-Type": image.type, "X-Request-ID": requestId, "X-Detect-Options": JSON.stringify(options) },
    body: image.bytes,
  });
  // If we stop waiting, the call (and with it the container's boot) goes on
  // in the background, so the client's retry finds the container warm.
  keepAlive(call.catch(() => undefined));
  let res: Response;
  try {
    res = await withDeadline(call, config.detectDeadlineMs(env));
  } catch (e) {
    // Past our deadline the container is almost always still booting; its
    // start continues in the background, so the retry finds it warm.
    if (e instanceof DeadlineError) throw coldStart(3);
    throw upstream("The detect container failed");
  }
  if (res.status === 503) throw coldStart(3);
  if (res.status === 422) throw invalidInput("The image could not be decoded");
  if (!res.ok) throw upstream(`The detect container answered ${res.status}`);
  const result = (await res.json()) as DetectResult;
  if (!Array.isArray(result?.objects) || typeof result.image?.width !== "number") throw upstream("The detect container answered an unexpected shape");
  return { result, provider };
}
