// Image dimensions from the file header, without decoding pixels: JPEG SOF,
// PNG IHDR, WebP (VP8 / VP8L / VP8X) and HEIC (largest `ispe` box).

export interface ImageInfo {
  format: "jpeg" | "png" | "webp" | "heic";
  width: number;
  height: number;
}

const u16be = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const u32be = (b: Uint8Array, o: number) => ((b[o]! << 24) >>> 0) + (b[o + 1]! << 16) + (b[o + 2]! << 8) + b[o + 3]!;
const u16le = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u24le = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16);
const ascii = (b: Uint8Array, o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));

function jpeg(b: Uint8Array): ImageInfo | null {
  let o = 2;
  while (o + 4 <= b.length) {
    if (b[o] !== 0xff) return null;
    while (b[o] === 0xff && o < b.length) o++; // fill bytes
    const marker = b[o]!;
    o++;
    // Markers without a length field.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) continue;
    if (o + 2 > b.length) return null;
    const len = u16be(b, o);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (o + 7 > b.length) return null;
      return { format: "jpeg", height: u16be(b, o + 3), width: u16be(b, o + 5) };
    }
    o += len;
  }
  return null;
}

function png(b: Uint8Array): ImageInfo | null {
  if (b.length < 24 || ascii(b, 12, 4) !== "IHDR") return null;
  return { format: "png", width: u32be(b, 16), height: u32be(b, 20) };
}

function webp(b: Uint8Array): ImageInfo | null {
  if (b.length < 25) return null;
  const chunk = ascii(b, 12, 4);
  if (chunk === "VP8L") {
    if (b[20] !== 0x2f) return null;
    const bits = b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24);
    return { format: "webp", width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (b.length < 30) return null;
  if (chunk === "VP8 ") {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return { format: "webp", width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
  }
  if (chunk === "VP8X") return { format: "webp", width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
  return null;
}

function heic(b: Uint8Array): ImageInfo | null {
  // `ispe` (image spatial extents): size(4) "ispe" version+flags(4) width(4) height(4).
  // Thumbnails have their own; the primary image is the largest.
  let best: ImageInfo | null = null;
  for (let i = 4; i + 16 <= b.length; i++) {
    if (b[i] === 0x69 && b[i + 1] === 0x73 && b[i + 2] === 0x70 && b[i + 3] === 0x65) {
      const width = u32be(b, i + 8);
      const height = u32be(b, i + 12);
      if (!best || width * height > best.width * best.height) best = { format: "heic", width, height };
    }
  }
  return best;
}

export function imageInfo(b: Uint8Array): ImageInfo | null {
  let info: ImageInfo | null = null;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) info = jpeg(b);
  else if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 3) === "PNG") info = png(b);
  else if (b.length >= 12 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") info = webp(b);
  else if (b.length >= 12 && ascii(b, 4, 4) === "ftyp") info = heic(b);
  return info && info.width > 0 && info.height > 0 ? info : null;
}
