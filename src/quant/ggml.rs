//! ggml's tensor types: block geometry, and dequantization to f32 for the types tmac reads.
//! Dequantization follows ggml-quants.c exactly (same operation order, same f16 decode), so the
//! f32 reference path sees bit-identical weights to llama.cpp's.

use crate::error::{Error, Result};
use half::{bf16, f16};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    TQ1_0,
    TQ2_0,
    /// bitnet.cpp's I2_S (type 36): 2-bit ternary codes and one f32 scale per tensor
    /// (`quant::ternary` reads it; its byte size is not a per-row rule, see `I2S_TAIL`).
    I2S,
}

/// Bytes after an I2_S tensor's packed codes: the f32 scale, padded to 32.
pub const I2S_TAIL: u64 = 32;

impl GgmlType {
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            36 => I2S,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2K => 10,
            Q3K => 11,
            Q4K => 12,
            Q5K => 13,
            Q6K => 14,
            Q8K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            I2S => 36,
        }
    }

    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            I2S => "I2_S",
        }
    }

    /// (elements per block, bytes per block)
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
            TQ1_0 => (256, 54),
            TQ2_0 => (256, 66),
            // 128 codes in 32 bytes; the tensor ends with I2S_TAIL bytes (see tensor_bytes)
            I2S => (128, 32),
        }
    }

    /// Bytes of one row of `n` elements; `n` must be a whole number of blocks.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let (be, bb) = self.block();
        if n % be != 0 {
            return None;
        }
        (n / be).checked_mul(bb)
    }

    /// Bytes of a whole tensor of `n` elements with `row` elements per row. The same as
    /// rows x row_bytes, except for I2_S, whose blocks run over the flattened tensor and which
    /// ends with a scale (bitnet.cpp's ggml_nbytes: n / 4 + 32).
    pub fn tensor_bytes(self, n: u64, row: u64) -> Option<u64> {
        if self == GgmlType::I2S {
            return (n % 128 == 0).then(|| n / 4 + I2S_TAIL);
        }
        self.row_bytes(row)?.checked_mul(n / row.max(1))
    }

    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q4_0 | Q4_1 | Q8_0 | Q6K | TQ2_0 | TQ1_0 | I2S
        )
    }
}

/// Quantize f32 values to ggml type `type_id` (Q8_0, Q4_0 or Q4_1, by ggml's reference
/// rounding rules); None for other types or a length that is not whole blocks.
pub fn quantize(type_id: u32, x: &[f32]) -> Option<Vec<u8>> {
    if x.len() % 32 != 0 {
        return None;
    }
    let f16b = |v: f32| f16::from_f32(v).to_le_bytes();
    let mut out = Vec::new();
    for b in x.chunks_exact(32) {
        match type_id {
            8 => {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16b(d));
                out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
            }
            2 => {
                // the signed value of largest magnitude maps to -8
                let max = b
                    .iter()
                    .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16b(d));
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
            3 => {
                let min = b.iter().copied().fold(f32::INFINITY, f32::min);
                let max = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16b(d));
                out.extend_from_slice(&f16b(min));
                let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn h(b: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// Dequantize `src` (whole blocks of type `t`) into `dst` (dst.len() elements).
pub fn dequantize(t: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    if t == GgmlType::I2S {
        // a whole tensor only: the scale is at its end
        return crate::quant::ternary::dequantize_i2s(src, dst);
    }
    let need = t.row_bytes(dst.len() as u64);
    if need != Some(src.len() as u64) {
        return Err(Error::format(format!(
            "{} data: {} bytes do not hold {} elements",
            t.name(),
            src.len(),
            dst.len()
        )));
    }
    match t {
        GgmlType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        GgmlType::F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = h(s);
            }
        }
        GgmlType::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_bits(u16::from_le_bytes([s[0], s[1]])).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (d, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
                let scale = h(b);
                for (x, &q) in d.iter_mut().zip(&b[2..]) {
                    *x = q as i8 as f32 * scale;
                }
            }
        }
        GgmlType::Q4_0 => {
            // byte j: low nibble is element j, high nibble element j+16
            for (d, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(18)) {
                let scale = h(b);
                for j in 0..16 {
                    d[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * scale;
                    d[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * scale;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (d, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(20)) {
                let (scale, min) = (h(b), h(&b[2..]));
                for j in 0..16 {
                    d[j] = (b[4 + j] & 0x0F) as f32 * scale + min;
                    d[j + 16] = (b[4 + j] >> 4) as f32 * scale + min;
                }
            }
        }
        GgmlType::Q6K => dequantize_q6k(src, dst),
        GgmlType::TQ2_0 => {
            // 64 bytes of 2-bit codes (value+1), then f16 d. Within each 32-byte chunk, byte j
            // holds elements j, j+32, j+64, j+96 at bit shifts 0, 2, 4, 6.
            for (d, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(66)) {
                let scale = h(&b[64..]);
                for (c, chunk) in b[..64].chunks_exact(32).enumerate() {
                    for l in 0..4 {
                        for (j, &q) in chunk.iter().enumerate() {
                            let v = ((q >> (2 * l)) & 3) as i32 - 1;
                            d[c * 128 + l * 32 + j] = v as f32 * scale;
                        }
                    }
                }
            }
        }
        GgmlType::TQ1_0 => dequantize_tq1_0(src, dst),
        _ => {
            return Err(Error::unsupported(format!(
                "tensor type {} cannot be dequantized by tmac",
                t.name()
            )))
        }
    }
    Ok(())
}

// block_q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d (f16)
fn dequantize_q6k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(210)) {
        let d = h(&b[208..]);
        let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
        for n in 0..2 {
            let (ql, qh, sc, y) = (
                &ql[64 * n..],
                &qh[32 * n..],
                &sc[8 * n..],
                &mut y[128 * n..],
            );
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * (sc[is] as i8 as f32) * q1 as f32;
                y[l + 32] = d * (sc[is + 2] as i8 as f32) * q2 as f32;
                y[l + 64] = d * (sc[is + 4] as i8 as f32) * q3 as f32;
                y[l + 96] = d * (sc[is + 6] as i8 as f32) * q4 as f32;
            }
        }
    }
}

// block_tq1_0: qs[48] (5 trits per byte, base-3 fixed point), qh[4] (4 trits per byte), d (f16)
fn dequantize_tq1_0(src: &[u8], dst: &mut [f32]) {
    const POW3: [u16; 6] = [1, 3, 9, 27, 81, 243];
    let trit = |q: u8, n: usize| -> f32 {
        let q = (q as u16).wrapping_mul(POW3[n]) as u8;
        let xi = ((q as u16 * 3) >> 8) as i32;
        (xi - 1) as f32
    };
    for (y, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(54)) {
        let d = h(&b[52..]);
        let (qs, qh) = (&b[..48], &b[48..52]);
        let mut i = 0;
        // first 32 bytes: 5 trits each, elements n*32 + m
        for n in 0..5 {
            for m in 0..32 {
                y[i + n * 32 + m] = trit(qs[m], n) * d;
            }
        }
        i += 160;
        for n in 0..5 {
            for m in 0..16 {
                y[i + n * 16 + m] = trit(qs[32 + m], n) * d;
            }
        }
        i += 80;
        for n in 0..4 {
            for (m, &q) in qh.iter().enumerate() {
                y[i + n * 4 + m] = trit(q, n) * d;
            }
        }
    }
}
