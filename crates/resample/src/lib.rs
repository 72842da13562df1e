//! Tether's own Lanczos3 resampler: 8-bit pixels of 1 to 4 interleaved channels, any size
//! to any size (the upload path, `src/upload/pixels.rs`, only shrinks a DCT-scaled decoded
//! photo). It exists instead of the `fast_image_resize` crate for size: that crate's SIMD
//! kernels for many fixed-point precisions, SSE4.1 and AVX2 were ~267 KB of the stripped
//! library; this is a few KB.
//!
//! Why a crate of its own: speed in the shipping build. Its loops are written for LLVM's
//! vectorisers, which opt-level "z" (the `release-small` profile) turns off: there a
//! 2000x1500 -> 1024x768 resize took ~110-150 ms, against ~35-60 ms at opt-level 3. As a
//! separate crate it gets `opt-level = 3` inside the size-optimised build (Cargo.toml's
//! `[profile.release-small.package.tether-resample]`), for a few KB more.
//!
//! How: separable, one pass per axis through one intermediate buffer. The kernel's support
//! is widened by the shrink factor, so a downscale averages every source pixel it covers
//! (no aliasing); windows are clipped at the edges. Each output column/row gets its weights
//! once, normalised to sum exactly `1 << BITS` in fixed point, so a flat area stays exactly
//! flat and the inner loops are integer multiply-adds.

use std::fmt;

/// Why a resize was refused (the pixels or sizes it was given do not describe an image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(&'static str);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resize: {}", self.0)
    }
}

impl std::error::Error for Error {}

type Result<T> = std::result::Result<T, Error>;

/// Fractional bits of the fixed-point weights. A weight of a normalised Lanczos3 window
/// stays well inside (-2, 2), which fits `i16` with 14 bits; `i16` weights keep the
/// multiply-adds narrow enough for the SSE2 baseline to vectorise.
const BITS: u32 = 14;
const ONE: i32 = 1 << BITS;
const HALF: i32 = 1 << (BITS - 1);

fn invalid(what: &'static str) -> Error {
    Error(what)
}

/// Resamples `src` (`sw` x `sh` pixels of `channels` bytes, rows packed) to `dw` x `dh`.
pub fn lanczos3(
    src: &[u8],
    (sw, sh): (u32, u32),
    channels: u8,
    (dw, dh): (u32, u32),
) -> Result<Vec<u8>> {
    if !(1..=4).contains(&channels) {
        return Err(invalid("1 to 4 channels are supported"));
    }
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return Err(invalid("an image has no pixels"));
    }
    let c = channels as usize;
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    let len = |w: usize, h: usize| {
        w.checked_mul(h)
            .and_then(|n| n.checked_mul(c))
            .ok_or_else(|| invalid("image too large"))
    };
    if src.len() != len(sw, sh)? {
        return Err(invalid("pixel data of the wrong size"));
    }
    let mut out = vec![0u8; len(dw, dh)?];
    let horizontal = |src: &[u8], dst: &mut [u8], taps: &Taps| match c {
        1 => horizontal::<1>(src, sw, dst, taps),
        2 => horizontal::<2>(src, sw, dst, taps),
        3 => horizontal::<3>(src, sw, dst, taps),
        _ => horizontal::<4>(src, sw, dst, taps),
    };
    match (sw == dw, sh == dh) {
        (true, true) => out.copy_from_slice(src),
        (false, true) => horizontal(src, &mut out, &Taps::new(sw, dw)),
        (true, false) => vertical(src, sw * c, &mut out, &Taps::new(sh, dh)),
        (false, false) => {
            let (tx, ty) = (Taps::new(sw, dw), Taps::new(sh, dh));
            // Multiply-adds of each order, the horizontal ones counted four times: the
            // vertical pass runs along whole rows and vectorises, the horizontal one
            // gathers a few pixels per output and mostly does not. Shrinking rows first
            // usually wins when the height shrinks less than the width.
            let h_cost = |rows: usize| 4 * rows * dw * tx.stride;
            let v_cost = |cols: usize| dh * cols * ty.stride;
            if h_cost(sh) + v_cost(dw) <= v_cost(sw) + h_cost(dh) {
                let mut mid = vec![0u8; len(dw, sh)?];
                horizontal(src, &mut mid, &tx);
                vertical(&mid, dw * c, &mut out, &ty);
            } else {
                let mut mid = vec![0u8; len(sw, dh)?];
                vertical(src, sw * c, &mut mid, &ty);
                horizontal(&mid, &mut out, &tx);
            }
        }
    }
    Ok(out)
}

/// The Lanczos kernel with three lobes: `sinc(x) * sinc(x / 3)` on (-3, 3).
fn kernel(x: f64) -> f64 {
    use std::f64::consts::PI;
    if x == 0.0 {
        1.0
    } else if x.abs() < 3.0 {
        let px = PI * x;
        3.0 * px.sin() * (px / 3.0).sin() / (px * px)
    } else {
        0.0
    }
}

/// The weights along one axis: output `o` is the sum of source pixels
/// `starts[o] .. starts[o] + lens[o]` times `weights[o * stride ..][.. lens[o]]`.
struct Taps {
    starts: Vec<usize>,
    lens: Vec<usize>,
    stride: usize,
    weights: Vec<i16>,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Taps {
        let scale = src as f64 / dst as f64;
        // Shrinking by `scale` stretches the kernel by as much, so each output averages
        // the whole area it covers; growing keeps the kernel's own support.
        let stretch = scale.max(1.0);
        let support = 3.0 * stretch;
        let stride = ((support.ceil() as usize) * 2 + 1).min(src);
        let mut taps = Taps {
            starts: Vec::with_capacity(dst),
            lens: Vec::with_capacity(dst),
            stride,
            weights: vec![0; dst * stride],
        };
        let mut f = vec![0f64; stride];
        for (o, out) in taps.weights.chunks_exact_mut(stride).enumerate() {
            // The output pixel's centre in source coordinates (pixel i covers [i, i+1)).
            let centre = (o as f64 + 0.5) * scale;
            let lo = (centre - support + 0.5).floor().max(0.0) as usize;
            let hi = ((centre + support + 0.5).floor() as usize).min(src);
            let lo = lo.min(hi.saturating_sub(1));
            let n = (hi - lo).min(stride);
            let mut sum = 0.0;
            for (i, w) in f[..n].iter_mut().enumerate() {
                *w = kernel(((lo + i) as f64 + 0.5 - centre) / stretch);
                sum += *w;
            }
            if sum.abs() < 1e-9 {
                // Not reachable with a centre inside the image; the nearest pixel is the
                // safe answer.
                f[..n].fill(0.0);
                f[0] = 1.0;
                sum = 1.0;
            }
            for (q, &w) in out.iter_mut().zip(&f[..n]) {
                *q = (w / sum * ONE as f64)
                    .round()
                    .clamp(i16::MIN as f64, i16::MAX as f64) as i16;
            }
            // Rounding error goes to the largest weight, so the sum is exactly one.
            let total: i32 = out.iter().map(|&q| q as i32).sum();
            if let Some(q) = out.iter_mut().max_by_key(|q| q.unsigned_abs()) {
                *q = (*q as i32 + ONE - total).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
            taps.starts.push(lo);
            taps.lens.push(n);
        }
        taps
    }

    /// The first source pixel and the weights of output `o`.
    fn of(&self, o: usize) -> (usize, &[i16]) {
        let (start, n) = (
            self.starts.get(o).copied().unwrap_or(0),
            self.lens.get(o).copied().unwrap_or(0),
        );
        let w = self
            .weights
            .get(o * self.stride..o * self.stride + n)
            .unwrap_or(&[]);
        (start, w)
    }
}

fn to_u8(acc: i32) -> u8 {
    (acc >> BITS).clamp(0, 255) as u8
}

// The passes below are written for the shipping profile (`release-small`, opt-level "z"),
// which turns LLVM's vectorisers off and inlines little: plain index loops over fixed-size
// arrays, no iterator adaptors in the inner loops (iterator chains there cost ten times
// their arithmetic at "z", measured: 500 -> ~130 ms). At opt-level 3 the same loops
// vectorise. Explicit SSE2 / NEON kernels for the two inner loops would win back "z"'s
// loss for a few hundred bytes more; not written yet.

/// Resamples every row of `src` (rows of `sw` pixels) to the width of `dst`.
fn horizontal<const C: usize>(src: &[u8], sw: usize, dst: &mut [u8], taps: &Taps) {
    let (sr, dr) = (sw * C, taps.starts.len() * C);
    if sr == 0 || dr == 0 {
        return;
    }
    let rows = (src.len() / sr).min(dst.len() / dr);
    for y in 0..rows {
        let srow = &src[y * sr..(y + 1) * sr];
        let drow = &mut dst[y * dr..(y + 1) * dr];
        for o in 0..taps.starts.len() {
            let (start, w) = taps.of(o);
            let Some(from) = srow.get(start * C..(start + w.len()) * C) else {
                continue;
            };
            let mut acc = [HALF; C];
            let mut t = 0;
            while t < w.len() {
                let k = w[t] as i32;
                let mut c = 0;
                while c < C {
                    acc[c] += from[t * C + c] as i32 * k;
                    c += 1;
                }
                t += 1;
            }
            let mut c = 0;
            while c < C {
                drow[o * C + c] = to_u8(acc[c]);
                c += 1;
            }
        }
    }
}

/// Bytes of a row the vertical pass sums at once, their sums kept in registers across
/// all the taps rather than stored and reloaded after each.
const BLOCK: usize = 32;

/// `acc += v * k`, lane by lane, over arrays of a fixed size: no bounds checks, and one
/// loop the vectoriser turns into a few instructions where it runs.
#[inline(always)]
fn mac_block(acc: &mut [i32; BLOCK], v: &[u8; BLOCK], k: i32) {
    let mut i = 0;
    while i < BLOCK {
        acc[i] += v[i] as i32 * k;
        i += 1;
    }
}

/// Resamples the columns of `src` (rows of `row` bytes) to the height of `dst`.
fn vertical(src: &[u8], row: usize, dst: &mut [u8], taps: &Taps) {
    if row == 0 {
        return;
    }
    let outs = (dst.len() / row).min(taps.starts.len());
    for o in 0..outs {
        let (start, w) = taps.of(o);
        let Some(rows) = src.get(start * row..(start + w.len()) * row) else {
            continue;
        };
        let drow = &mut dst[o * row..(o + 1) * row];
        let mut x = 0;
        while x + BLOCK <= row {
            let mut acc = [HALF; BLOCK];
            let mut t = 0;
            while t < w.len() {
                let k = w[t] as i32;
                let at = t * row + x;
                if let Some(v) = rows.get(at..at + BLOCK).and_then(|v| v.try_into().ok()) {
                    mac_block(&mut acc, v, k);
                }
                t += 1;
            }
            let mut i = 0;
            while i < BLOCK {
                drow[x + i] = to_u8(acc[i]);
                i += 1;
            }
            x += BLOCK;
        }
        while x < row {
            let mut acc = HALF;
            let mut t = 0;
            while t < w.len() {
                acc += rows[t * row + x] as i32 * w[t] as i32;
                t += 1;
            }
            drow[x] = to_u8(acc);
            x += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey or colour image from a function of (x, y, channel).
    fn image(
        w: usize,
        h: usize,
        c: usize,
        mut f: impl FnMut(usize, usize, usize) -> u8,
    ) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * c);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    v.push(f(x, y, ch));
                }
            }
        }
        v
    }

    fn noise(seed: &mut u32) -> u32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        *seed
    }

    /// Smooth colour waves, grain, and a hard-edged dark rectangle: what a photo has.
    fn photo_like(w: usize, h: usize) -> Vec<u8> {
        let mut seed = 0x9e37_79b9;
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
                let grain = (noise(&mut seed) % 21) as f64 - 10.0;
                let edge = (w / 3..w / 2).contains(&x) && (h / 4..h / 2).contains(&y);
                for base in [
                    128.0 + 100.0 * (fx * 7.0 + fy * 2.0).sin(),
                    128.0 + 90.0 * (fy * 5.0 - fx * 3.0).cos(),
                    128.0 + 80.0 * ((fx + fy) * 4.0).sin(),
                ] {
                    let p = if edge { 20.0 } else { base + grain };
                    v.push(p.round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        v
    }

    /// The same filter in f64 throughout, written the slow, obvious way: the reference
    /// our fixed-point passes are held to.
    fn reference(
        src: &[u8],
        (sw, sh): (usize, usize),
        c: usize,
        (dw, dh): (usize, usize),
    ) -> Vec<u8> {
        let weights = |s: usize, d: usize, o: usize| -> Vec<(usize, f64)> {
            let scale = s as f64 / d as f64;
            let stretch = scale.max(1.0);
            let centre = (o as f64 + 0.5) * scale;
            let mut w: Vec<(usize, f64)> = (0..s)
                .map(|i| (i, kernel((i as f64 + 0.5 - centre) / stretch)))
                .filter(|&(_, k)| k != 0.0)
                .collect();
            let sum: f64 = w.iter().map(|&(_, k)| k).sum();
            w.iter_mut().for_each(|(_, k)| *k /= sum);
            w
        };
        let across: Vec<_> = (0..dw).map(|x| weights(sw, dw, x)).collect();
        let mut mid = vec![0f64; dw * sh * c];
        for y in 0..sh {
            for (x, w) in across.iter().enumerate() {
                for &(i, k) in w {
                    for ch in 0..c {
                        mid[(y * dw + x) * c + ch] += k * src[(y * sw + i) * c + ch] as f64;
                    }
                }
            }
        }
        let mut out = vec![0u8; dw * dh * c];
        for y in 0..dh {
            let w = weights(sh, dh, y);
            for x in 0..dw {
                for ch in 0..c {
                    let v: f64 = w.iter().map(|&(i, k)| k * mid[(i * dw + x) * c + ch]).sum();
                    out[(y * dw + x) * c + ch] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }

    /// Mean absolute difference per channel, and the largest difference.
    fn compare(a: &[u8], b: &[u8], c: usize) -> (Vec<f64>, u8) {
        assert_eq!(a.len(), b.len());
        let mut sums = vec![0f64; c];
        let mut max = 0;
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            sums[i % c] += x.abs_diff(y) as f64;
            max = max.max(x.abs_diff(y));
        }
        let n = (a.len() / c) as f64;
        (sums.iter().map(|s| s / n).collect(), max)
    }

    fn mean(v: &[u8]) -> f64 {
        v.iter().map(|&p| p as f64).sum::<f64>() / v.len() as f64
    }

    #[test]
    fn every_window_is_inside_the_source_and_sums_to_exactly_one() {
        for (src, dst) in [
            (4000, 1024),
            (2000, 1024),
            (1500, 768),
            (7, 3),
            (1, 1),
            (3, 11),
            (9, 1),
        ] {
            let taps = Taps::new(src, dst);
            assert_eq!(taps.starts.len(), dst);
            for o in 0..dst {
                let (start, w) = taps.of(o);
                assert!(
                    !w.is_empty() && start + w.len() <= src,
                    "{src} -> {dst}, output {o}"
                );
                let sum: i32 = w.iter().map(|&k| k as i32).sum();
                assert_eq!(sum, ONE, "{src} -> {dst}, output {o}");
            }
        }
    }

    #[test]
    fn a_flat_image_stays_exactly_flat() {
        let colour = [17u8, 200, 255, 0];
        for c in 1..=4 {
            for (from, to) in [
                ((200, 150), (64, 48)),
                ((37, 23), (10, 7)),
                ((5, 5), (3, 2)),
                ((3000, 7), (1024, 3)),
                ((10, 8), (25, 19)),
                ((1, 1), (4, 3)),
            ] {
                let src = image(from.0, from.1, c, |_, _, ch| colour[ch]);
                let size = |(w, h): (usize, usize)| (w as u32, h as u32);
                let out = lanczos3(&src, size(from), c as u8, size(to)).unwrap();
                assert_eq!(out.len(), to.0 * to.1 * c);
                for px in out.chunks_exact(c) {
                    assert_eq!(px, &colour[..c], "{c} channels, {from:?} -> {to:?}");
                }
            }
        }
    }

    #[test]
    fn a_gradient_stays_monotonic_and_on_its_line() {
        // 0..=255 over 400 pixels; 400 -> 130 is a shrink by ~3.08.
        let (sw, dw, rows) = (400usize, 130usize, 6usize);
        let value = |x: f64| x * 255.0 / (sw - 1) as f64;
        let across = image(sw, rows, 1, |x, _, _| value(x as f64).round() as u8);
        let down = image(rows, sw, 1, |_, y, _| value(y as f64).round() as u8);
        let a = lanczos3(&across, (sw as u32, rows as u32), 1, (dw as u32, 3)).unwrap();
        let d = lanczos3(&down, (rows as u32, sw as u32), 1, (2, dw as u32)).unwrap();
        let lines = [
            a.chunks_exact(dw).map(|r| r.to_vec()).collect::<Vec<_>>(),
            (0..2)
                .map(|x| (0..dw).map(|y| d[y * 2 + x]).collect())
                .collect(),
        ];
        for line in lines.iter().flatten() {
            assert!(
                line.windows(2).all(|p| p[0] <= p[1]),
                "not monotonic: {line:?}"
            );
            // Away from the edges (where the window is clipped), output o sits at source
            // position (o + 0.5) * scale - 0.5 (pixel centres), and a linear ramp under a
            // symmetric normalised kernel keeps its value there.
            let scale = sw as f64 / dw as f64;
            for (o, &got) in line.iter().enumerate().take(dw - 10).skip(10) {
                let want = value((o as f64 + 0.5) * scale - 0.5);
                assert!(
                    (got as f64 - want).abs() <= 1.0,
                    "output {o}: {got} but the ramp is {want:.2} there"
                );
            }
        }
    }

    #[test]
    fn a_shrink_averages_fine_detail() {
        // A one-pixel checkerboard has no frequency a 3x shrink can keep: every output
        // is its mean, grey. A kernel not widened by the shrink factor aliases it.
        let board = image(
            300,
            200,
            1,
            |x, y, _| if (x + y) % 2 == 0 { 255 } else { 0 },
        );
        let out = lanczos3(&board, (300, 200), 1, (97, 61)).unwrap();
        assert!(
            (mean(&out) - mean(&board)).abs() <= 1.0,
            "mean {}",
            mean(&out)
        );
        for &p in &out {
            assert!(
                (p as i32 - 128).abs() <= 8,
                "checkerboard shrank to {p}, not grey"
            );
        }
        // Noise: the mean survives within one level.
        let mut seed = 7;
        let grain = image(320, 240, 3, |_, _, _| (noise(&mut seed) & 0xff) as u8);
        let out = lanczos3(&grain, (320, 240), 3, (101, 77)).unwrap();
        assert!((mean(&out) - mean(&grain)).abs() <= 1.0);
    }

    #[test]
    fn one_pixel_and_odd_sizes_work_and_empty_ones_are_errors() {
        assert_eq!(lanczos3(&[9], (1, 1), 1, (1, 1)).unwrap(), vec![9]);
        assert_eq!(
            lanczos3(&[1, 2, 3], (1, 1), 3, (2, 1)).unwrap(),
            vec![1, 2, 3, 1, 2, 3]
        );
        let row = [10u8, 20, 30, 40, 50, 60, 70];
        let out = lanczos3(&row, (7, 1), 1, (3, 1)).unwrap();
        assert!(
            out.windows(2).all(|p| p[0] < p[1]) && out[1] == 40,
            "{out:?}"
        );
        let out = lanczos3(&row, (1, 7), 1, (1, 3)).unwrap();
        assert!(
            out.windows(2).all(|p| p[0] < p[1]) && out[1] == 40,
            "{out:?}"
        );
        // To one pixel: the mean of a symmetric image.
        let out = lanczos3(&[0, 100, 200, 100, 0], (5, 1), 1, (1, 1)).unwrap();
        assert!((out[0] as i32 - 80).abs() <= 30, "{out:?}");
        for (src, from, c, to) in [
            (&[][..], (0, 0), 1, (1, 1)),
            (&[1][..], (1, 1), 1, (0, 5)),
            (&[1][..], (1, 1), 0, (1, 1)),
            (&[1, 2, 3, 4, 5][..], (1, 1), 5, (1, 1)),
            (&[1, 2][..], (1, 1), 1, (2, 2)),
            (&[1][..], (u32::MAX, u32::MAX), 4, (1, 1)),
        ] {
            assert!(matches!(lanczos3(src, from, c, to), Err(Error(_))));
        }
    }

    #[test]
    fn matches_the_f64_filter_on_a_photo() {
        let (sw, sh) = (600, 450);
        let photo = photo_like(sw, sh);
        for to in [(307, 230), (120, 90), (600, 97), (211, 450), (800, 601)] {
            let ours = lanczos3(
                &photo,
                (sw as u32, sh as u32),
                3,
                (to.0 as u32, to.1 as u32),
            )
            .unwrap();
            let (mad, max) = compare(&ours, &reference(&photo, (sw, sh), 3, to), 3);
            for m in &mad {
                assert!(*m < 0.5, "{to:?}: mean difference {mad:?}");
            }
            assert!(max <= 4, "{to:?}: largest difference {max}");
        }
    }
}
