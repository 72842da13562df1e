// Stand-in output of the image model: like Flux Schnell on Workers AI, a base64 JPEG at
// the model's own size (64x48 here), whatever size was asked for. The Worker's real
// path then turns it into the PNG of the requested size the contract promises (through
// the Images binding), exactly as it does with the real model's answer.
// Made once with sharp from a 64x48 RGB gradient, JPEG quality 80 (660 base64 chars).
export const FLUX_SAMPLE_JPEG_B64 =
  "/9j/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wAARCAAwAEADASIAAhEBAxEB/8QAFwABAQEBAAAAAAAAAAAAAAAABAUGCP/EABkQAAMBAQEAAAAAAAAAAAAAAAADBGEhMf/EABcBAQEBAQAAAAAAAAAAAAAAAAQGAwj/xAAYEQEBAQEBAAAAAAAAAAAAAAAEAAIDYf/aAAwDAQACEQMRAD8A57TJ5waqTCkqTBqpPOFrtMIq6aqTBipMKapMGqkwH0TUpV0xUmDUyecKSpMGqkwFtNSFXTVSYMVJ5wppk84NVJgPaalKuwqZPODFSYU1SYNTJ5w36JuayrpiZPODVSYUlSYNVJgLaalKumqkwYmTzhTVJg1UmA+iakKumKkwamTzhTVJ5wYqTAfRNSlXYVUnnBqpMKapMGJk84b7Tc1lX7TVSecGqkwpKkwaqTAXRNSFX7TFSYNVJhTVJgxUmA9pqUq/aaqTBqZPOFJMnnBqpMB7TUhV+3//2Q==";
