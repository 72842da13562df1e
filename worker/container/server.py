"""Detect server for the Tether detect Container.

Interface (the same one the Worker's stand-in implements, src/standin/detect.ts):
  POST /detect   body: raw image bytes; headers: Content-Type, X-Request-ID,
                 X-Detect-Options: {"min_score": 0.25, "max_objects": 20}
  -> 200 {"objects": [{"label", "score", "box": [x, y, w, h] (0..1)}],
          "model": "yolov8n", "image": {"width", "height"}}
  -> 422 when the image cannot be decoded
  GET /health    -> 200 (the Container's readiness probe)
Each request logs one JSON line with the Worker's request id.
"""
import io
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image
from pillow_heif import register_heif_opener
from ultralytics import YOLO

register_heif_opener()
MODEL = YOLO("yolov8n.pt")  # loaded once per container start


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # replaced by the JSON line below
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200 if self.path == "/health" else 404, {"ok": self.path == "/health"})

    def do_POST(self):
        started = time.time()
        request_id = self.headers.get("X-Request-ID", "")
        status = 500
        try:
            if self.path != "/detect":
                status = 404
                return self._send(404, {"error": "not found"})
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            opts = json.loads(self.headers.get("X-Detect-Options") or "{}")
            try:
                img = Image.open(io.BytesIO(raw)).convert("RGB")
            except Exception:
                status = 422
                return self._send(422, {"error": "cannot decode image"})
            w, h = img.size
            result = MODEL.predict(img, conf=float(opts.get("min_score", 0.25)), verbose=False)[0]
            objects = []
            for box, score, cls in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist()):
                x1, y1, x2, y2 = box
                objects.append({
                    "label": result.names[int(cls)],
                    "score": round(float(score), 3),
                    "box": [round(x1 / w, 4), round(y1 / h, 4), round((x2 - x1) / w, 4), round((y2 - y1) / h, 4)],
                })
            objects.sort(key=lambda o: -o["score"])
            status = 200
            self._send(200, {"objects": objects[: int(opts.get("max_objects", 20))], "model": "yolov8n", "image": {"width": w, "height": h}})
        finally:
            print(json.dumps({"msg": "detect", "request_id": request_id, "status": status,
                              "duration_ms": int((time.time() - started) * 1000)}), flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
