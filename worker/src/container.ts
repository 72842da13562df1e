// The production detect backend: a Container (see container/Dockerfile)
// managed by @cloudflare/containers. It sleeps after 5 idle minutes, so the
// first request after that pays a cold start (2-3 s); detect.ts bounds that
// wait with the Worker's own deadline.
import { Container } from "@cloudflare/containers";
import type { Env } from "./env";
import { logEvent } from "./log";

export class DetectContainer extends Container<Env> {
  override defaultPort = 8080;
  override sleepAfter = "5m";

  override onStart(): void {
    logEvent({ msg: "container_start", class: "DetectContainer" });
  }

  override onError(error: unknown): void {
    logEvent({ msg: "container_error", class: "DetectContainer", error: String(error) });
    throw error;
  }
}
