// Request bodies: size limits enforced while the body streams in, content
// type checks, and the "logical request" fingerprint used by idempotency.
import { MAX_IMAGE_BYTES, MAX_JSON_BYTES, MAX_MULTIPART_BYTES } from "./config";
import { badRequest, tooLarge, unsupportedMedia } from "./errors";
import { sha256Hex } from "./util";

/**
 * Reads the body, failing with 413 as soon as more than `max` bytes have
 * arrived (or at once when Content-Length already says so). The rest of an
 * oversized upload is never read.
 */
export async function readLimited(req: Request, max: number): Promise<Uint8Array> {
  const declared = req.headers.get("Content-Length");
  if (declared !== null && Number(declared) > max) throw tooLarge(max);
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel("body too large").catch(() => {});
      throw tooLarge(max);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function mediaType(req: Request): string {
  return (req.headers.get("Content-Type") ?? "").split(";")[0]!.trim().toLowerCase();
}

/** A JSON object body. An empty body counts as {} (the contract allows `{}` for sign-in). */
export async function readJsonObject(req: Request, { allowEmpty = false } = {}): Promise<Record<string, unknown>> {
  // An empty sign-in body is fine whatever its Content-Type (curl -d '').
  const noBody = !req.body || req.headers.get("Content-Length") === "0";
  if (allowEmpty && noBody) return {};
  // No body at all is a malformed request, whatever its (usually absent) Content-Type.
  if (noBody) throw badRequest("A JSON body is required");
  const type = mediaType(req);
  const isJson = type === "application/json" || type.endsWith("+json");
  // Check the type before reading, so a wrong upload is refused unread.
  if (!isJson && !(allowEmpty && type === "")) throw unsupportedMedia("Content-Type must be application/json");
  const raw = await readLimited(req, MAX_JSON_BYTES);
  if (raw.byteLength === 0 && allowEmpty) return {};
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw));
  } catch {
    throw badRequest("Body is not valid UTF-8 JSON");
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw badRequest("Body must be a JSON object");
  return value as Record<string, unknown>;
}

export const IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic"] as const;

export interface ImagePart {
  bytes: Uint8Array;
  type: string; // declared (or sniffed when declared as octet-stream/empty)
  filename: string;
}

export interface MultipartBody {
  image: ImagePart;
  fields: Map<string, string>;
  fingerprint: string; // of the parts, independent of the boundary
}

/** Magic-byte sniffing, used only when a part has no useful Content-Type. */
export function sniffImageType(b: Uint8Array): string | null {
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return "image/png";
  const ascii = (o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));
  if (ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") return "image/webp";
  if (ascii(4, 4) === "ftyp" && ["heic", "heix", "mif1", "msf1", "heim", "heis"].includes(ascii(8, 4))) return "image/heic";
  return null;
}

/**
 * Parses a multipart/form-data body with an `image` file part and text
 * parts. The fingerprint covers, for every part sorted by name: name,
 * filename, content type and a SHA-256 of the bytes; so a retry with a new
 * boundary (or another part order) is the same logical request.
 */
export async function readMultipart(req: Request, route: string): Promise<MultipartBody> {
  if (mediaType(req) !== "multipart/form-data") throw unsupportedMedia("Content-Type must be multipart/form-data");
  const raw = await readLimited(req, MAX_MULTIPART_BYTES);
  let form: FormData;
  try {
    form = await new Response(raw, { headers: { "Content-Type": req.headers.get("Content-Type")! } }).formData();
  } catch {
    throw badRequest("Body is not valid multipart/form-data");
  }
  const fields = new Map<string, string>();
  const described: string[] = [];
  let image: ImagePart | null = null;
  for (const [name, entry] of form.entries()) {
    const value = entry as unknown as File | string;
    if (typeof value === "string") {
      fields.set(name, value);
      described.push(`${name}\0\0text\0${await sha256Hex(value)}`);
      continue;
    }
    const bytes = new Uint8Array(await value.arrayBuffer());
    described.push(`${name}\0${value.name}\0${value.type}\0${await sha256Hex(bytes)}`);
    if (name === "image") image = { bytes, type: value.type.toLowerCase(), filename: value.name };
  }
  if (!image) throw badRequest("Missing `image` file part");
  if (image.bytes.byteLength > MAX_IMAGE_BYTES) throw tooLarge(MAX_IMAGE_BYTES);
  if (image.type === "" || image.type === "application/octet-stream") image.type = sniffImageType(image.bytes) ?? image.type;
  if (!(IMAGE_TYPES as readonly string[]).includes(image.type)) {
    throw unsupportedMedia(`Image type ${image.type || "(none)"} is not accepted; use ${IMAGE_TYPES.join(", ")}`);
  }
  described.sort(); // name first, so sorting orders parts by name
  const fingerprint = await sha256Hex(`${route}\n${described.join("\n")}`);
  return { image, fields, fingerprint };
}
