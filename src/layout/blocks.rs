//! One decoder per ggml block type that holds integer codes: a block becomes its codes and the
//! scales that turn them into weights. `dequantize` (the f32 reference), the LUT repacking and
//! the codebook kernels all read blocks through here, so each layout is written down once.
//! The formulas are ggml-quants.c's, in the same operation order, so weights come out
//! bit-identical to llama.cpp's dequantization.

use super::lut::Zero;
use crate::layout::ggml::GgmlType;
use half::f16;

/// IQ4_NL / IQ4_XS: the value of each 4-bit code (ggml's kvalues_iq4nl).
pub(crate) const IQ4_CODEBOOK: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// How a type builds its weights from codes q.
///   flat (no sub-scales):  w = d * (q - o)  or  w = q * d + m
///   K-quant sub-scales:    w = (d * sc) * (q - o)  or  w = (d * sc) * q + m * mn
/// with d, m per block (m = -dmin for K-quants), sc, mn per group, and with a codebook
/// q replaced by its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Form {
    /// Code width (1 to 6 bits).
    pub bits: u32,
    /// Elements per block (a super-block for K-quants).
    pub block: usize,
    /// Elements per scale group (K-quant sub-block; the block itself for flat types).
    pub group: usize,
    pub zero: Zero,
    /// Integer scales (and minimums) per group under the block's f16 factors.
    pub sub_scales: bool,
    /// Codes index IQ4_CODEBOOK.
    pub codebook: bool,
    /// Codes are ternary (0..=2, offset 1).
    pub ternary: bool,
}

/// The form of every type `decode` reads; None for the others.
pub fn form(t: GgmlType) -> Option<Form> {
    use GgmlType::*;
    let f = |bits, block, group, zero, sub_scales| Form {
        bits,
        block,
        group,
        zero,
        sub_scales,
        codebook: false,
        ternary: false,
    };
    Some(match t {
        Q4_0 => f(4, 32, 32, Zero::Offset(8), false),
        Q4_1 => f(4, 32, 32, Zero::Affine, false),
        Q5_0 => f(5, 32, 32, Zero::Offset(16), false),
        Q5_1 => f(5, 32, 32, Zero::Affine, false),
        Q2K => f(2, 256, 16, Zero::Affine, true),
        Q3K => f(3, 256, 16, Zero::Offset(4), true),
        Q4K => f(4, 256, 32, Zero::Affine, true),
        Q5K => f(5, 256, 32, Zero::Affine, true),
        Q6K => f(6, 256, 16, Zero::Offset(32), true),
        TQ1_0 | TQ2_0 => Form {
            ternary: true,
            ..f(2, 256, 256, Zero::Offset(1), false)
        },
        IQ4NL => Form {
            codebook: true,
            ..f(4, 32, 32, Zero::Offset(0), false)
        },
        IQ4XS => Form {
            codebook: true,
            ..f(4, 256, 32, Zero::Offset(0), true)
        },
        _ => return None,
    })
}

/// One decoded block.
pub(crate) struct Block {
    /// Codes of the block's elements (the first `form.block`).
    pub codes: [u8; 256],
    pub d: f16,
    /// Affine forms: the minimum (flat) or minus the minimum's factor dmin (K-quants).
    pub m: f16,
    /// K-quants: per group, the integer scale and minimum.
    pub sc: [i8; 16],
    pub mn: [u8; 16],
}

impl Default for Block {
    fn default() -> Block {
        Block {
            codes: [0; 256],
            d: f16::ZERO,
            m: f16::ZERO,
            sc: [0; 16],
            mn: [0; 16],
        }
    }
}

fn h(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

/// Four-bit codes of a 32-element block stored as ggml's Q4_0 does: byte j holds element j in
/// its low nibble and element j + 16 in its high one.
fn nibbles32(qs: &[u8], out: &mut [u8]) {
    for j in 0..16 {
        out[j] = qs[j] & 15;
        out[j + 16] = qs[j] >> 4;
    }
}

/// Q4_K / Q5_K scale and minimum of group j (ggml's get_scale_min_k4).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q3_K's 16 six-bit scales from their 12 packed bytes, minus 32.
fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (m1, m2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let (a0, a1, tmp) = (w(0), w(1), w(2));
    let aux = [
        (a0 & m2) | ((tmp & m1) << 4),
        (a1 & m2) | (((tmp >> 2) & m1) << 4),
        ((a0 >> 4) & m2) | (((tmp >> 4) & m1) << 4),
        ((a1 >> 4) & m2) | (((tmp >> 6) & m1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, v) in aux.iter().flat_map(|a| a.to_le_bytes()).enumerate() {
        out[i] = v as i8 - 32;
    }
    out
}

/// The 256 codes (value + 1) of a TQ1_0 block: base-3 digits stored as fixed-point fractions.
fn tq1_codes(blk: &[u8], out: &mut [u8]) {
    const POW3: [u16; 5] = [1, 3, 9, 27, 81];
    let trit = |q: u8, n: usize| (((q as u16 * POW3[n]) as u8 as u16 * 3) >> 8) as u8;
    let (qs, qh) = (&blk[..48], &blk[48..52]);
    for n in 0..5 {
        for m in 0..32 {
            out[n * 32 + m] = trit(qs[m], n);
        }
        for m in 0..16 {
            out[160 + n * 16 + m] = trit(qs[32 + m], n);
        }
    }
    for n in 0..4 {
        for (m, &q) in qh.iter().enumerate() {
            out[240 + n * 4 + m] = trit(q, n);
        }
    }
}

/// Decode one block of type `t` (`blk` holds exactly its bytes). Panics for a type without a
/// `form`.
pub(crate) fn decode(t: GgmlType, blk: &[u8], out: &mut Block) {
    use GgmlType::*;
    let c = &mut out.codes;
    match t {
        Q4_0 | IQ4NL => {
            out.d = h(blk, 0);
            nibbles32(&blk[2..18], c);
        }
        Q4_1 => {
            (out.d, out.m) = (h(blk, 0), h(blk, 2));
            nibbles32(&blk[4..20], c);
        }
        Q5_0 | Q5_1 => {
            let at = if t == Q5_0 { 2 } else { 4 };
            (out.d, out.m) = (h(blk, 0), if t == Q5_1 { h(blk, 2) } else { f16::ZERO });
            let qh = u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]]);
            nibbles32(&blk[at + 4..at + 20], c);
            for (e, q) in c[..32].iter_mut().enumerate() {
                *q |= (((qh >> e) & 1) << 4) as u8;
            }
        }
        Q2K => {
            // scales[16] (4-bit scale | 4-bit min << 4), qs[64], d, dmin
            (out.d, out.m) = (h(blk, 80), -h(blk, 82));
            for (g, &b) in blk[..16].iter().enumerate() {
                (out.sc[g], out.mn[g]) = ((b & 15) as i8, b >> 4);
            }
            for (e, q) in c.iter_mut().enumerate() {
                let (n, j, l) = (e / 128, e % 128 / 32, e % 32);
                *q = (blk[16 + 32 * n + l] >> (2 * j)) & 3;
            }
        }
        Q3K => {
            // hmask[32], qs[64], scales[12], d; value = low 2 bits + 4 * high bit - 4
            out.d = h(blk, 108);
            out.sc = q3k_scales(&blk[96..108]);
            for (e, q) in c.iter_mut().enumerate() {
                let (n, j, l) = (e / 128, e % 128 / 32, e % 32);
                let low = (blk[32 + 32 * n + l] >> (2 * j)) & 3;
                let high = (blk[l] >> (4 * n + j)) & 1;
                *q = low | (high << 2);
            }
        }
        Q4K | Q5K => {
            // d, dmin, scales[12], (Q5_K: qh[32]), qs[128]
            (out.d, out.m) = (h(blk, 0), -h(blk, 2));
            for g in 0..8 {
                let (s, m) = scale_min_k4(g, &blk[4..16]);
                (out.sc[g], out.mn[g]) = (s as i8, m);
            }
            let qs = if t == Q4K {
                &blk[16..144]
            } else {
                &blk[48..176]
            };
            for (e, q) in c.iter_mut().enumerate() {
                let (j, w) = (e / 64, e % 64);
                *q = if w < 32 {
                    qs[32 * j + w] & 15
                } else {
                    qs[32 * j + w - 32] >> 4
                };
                if t == Q5K {
                    *q |= ((blk[16 + e % 32] >> (e / 32)) & 1) << 4;
                }
            }
        }
        Q6K => {
            // ql[128], qh[64], scales[16] (int8), d
            out.d = h(blk, 208);
            for g in 0..16 {
                out.sc[g] = blk[192 + g] as i8;
            }
            for (e, q) in c.iter_mut().enumerate() {
                let (n, k, l) = (e / 128, e % 128 / 32, e % 32);
                let low = blk[64 * n + l + 32 * (k % 2)] >> (4 * (k / 2)) & 15;
                let high = (blk[128 + 32 * n + l] >> (2 * k)) & 3;
                *q = low | (high << 4);
            }
        }
        TQ1_0 => {
            out.d = h(blk, 52);
            tq1_codes(blk, c);
        }
        TQ2_0 => {
            // 64 bytes of 2-bit codes (value + 1): in each 32-byte chunk, byte j holds elements
            // j, j + 32, j + 64, j + 96 at bit shifts 0, 2, 4, 6
            out.d = h(blk, 64);
            for (e, q) in c.iter_mut().enumerate() {
                let (ch, l, j) = (e / 128, e % 128 / 32, e % 32);
                *q = (blk[32 * ch + j] >> (2 * l)) & 3;
            }
        }
        IQ4XS => {
            // d, scales_h (u16), scales_l[4], qs[128]: 8 groups of 32 with 6-bit scales - 32
            out.d = h(blk, 0);
            for (g, s) in super::iq4::sub_scales(t, blk).iter().enumerate() {
                out.sc[g] = *s as i8;
                nibbles32(&blk[8 + 16 * g..24 + 16 * g], &mut c[32 * g..]);
            }
        }
        _ => panic!("no block decoder for {}", t.name()),
    }
}

/// One weight from its code (or codebook value) q and its scales, as ggml-quants.c computes it:
/// K-quants scale d by the group's integer first (dl = d * sc), then the code.
#[inline]
pub(crate) fn weight(zero: Zero, sub: bool, q: i32, d: f32, m: f32, sc: i32, mn: i32) -> f32 {
    let dl = if sub { d * sc as f32 } else { d };
    match zero {
        Zero::Offset(o) => (q - o as i32) as f32 * dl,
        Zero::Affine if sub => dl * q as f32 + m * mn as f32,
        Zero::Affine => q as f32 * dl + m,
    }
}

/// The weights of one decoded block.
pub(crate) fn weights(f: &Form, b: &Block, out: &mut [f32]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for (e, w) in out.iter_mut().enumerate().take(f.block) {
        let g = e / f.group;
        let q = b.codes[e] as usize;
        let q = if f.codebook {
            IQ4_CODEBOOK[q] as i32
        } else {
            q as i32
        };
        let (sc, mn) = (b.sc[g] as i32, b.mn[g] as i32);
        *w = weight(f.zero, f.sub_scales, q, d, m, sc, mn);
    }
}

/// Dequantize whole blocks of a type with a `form` into `dst`.
pub(crate) fn dequantize(t: GgmlType, src: &[u8], dst: &mut [f32]) {
    let f = form(t).expect("a type with a block form");
    let bytes = t.block().1 as usize;
    let mut b = Block::default();
    for (blk, out) in src.chunks_exact(bytes).zip(dst.chunks_exact_mut(f.block)) {
        decode(t, blk, &mut b);
        weights(&f, &b, out);
    }
}
