//! ggml's tensor types: their traits (id, name, block geometry), and dequantization to f32 for
//! the types tmac reads. Dequantization follows ggml-quants.c exactly (same operation order, same
//! f16 decode; the block types through `blocks`), so the f32 reference path sees bit-identical
//! weights to llama.cpp's.

use super::blocks;
use crate::error::{Error, Result};
use half::{bf16, f16};

/// Every tensor type a GGUF file can name (ggml.h's `ggml_type`). tmac reads some of them
/// (`can_dequantize`); the others are known by name so errors can say which they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    IQ2XXS,
    IQ2XS,
    IQ3XXS,
    IQ1S,
    IQ4NL,
    IQ3S,
    IQ2S,
    IQ4XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1M,
    BF16,
    TQ1_0,
    TQ2_0,
    /// bitnet.cpp's I2_S (type 36): 2-bit ternary codes and one f32 scale per tensor
    /// (`layout::ternary` reads it; its byte size is not a per-row rule, see `I2S_TAIL`).
    I2S,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

/// Bytes after an I2_S tensor's packed codes: the f32 scale, padded to 32.
pub(crate) const I2S_TAIL: u64 = 32;

/// ggml's type traits for every type: (type, id, name, elements per block, bytes per block).
/// Id 36 is I2_S as bitnet.cpp writes it (mainline ggml retired the id).
const TRAITS: [(GgmlType, u32, &str, u64, u64); 36] = {
    use GgmlType::*;
    [
        (F32, 0, "F32", 1, 4),
        (F16, 1, "F16", 1, 2),
        (Q4_0, 2, "Q4_0", 32, 18),
        (Q4_1, 3, "Q4_1", 32, 20),
        (Q5_0, 6, "Q5_0", 32, 22),
        (Q5_1, 7, "Q5_1", 32, 24),
        (Q8_0, 8, "Q8_0", 32, 34),
        (Q8_1, 9, "Q8_1", 32, 36),
        (Q2K, 10, "Q2_K", 256, 84),
        (Q3K, 11, "Q3_K", 256, 110),
        (Q4K, 12, "Q4_K", 256, 144),
        (Q5K, 13, "Q5_K", 256, 176),
        (Q6K, 14, "Q6_K", 256, 210),
        (Q8K, 15, "Q8_K", 256, 292),
        (IQ2XXS, 16, "IQ2_XXS", 256, 66),
        (IQ2XS, 17, "IQ2_XS", 256, 74),
        (IQ3XXS, 18, "IQ3_XXS", 256, 98),
        (IQ1S, 19, "IQ1_S", 256, 50),
        (IQ4NL, 20, "IQ4_NL", 32, 18),
        (IQ3S, 21, "IQ3_S", 256, 110),
        (IQ2S, 22, "IQ2_S", 256, 82),
        (IQ4XS, 23, "IQ4_XS", 256, 136),
        (I8, 24, "I8", 1, 1),
        (I16, 25, "I16", 1, 2),
        (I32, 26, "I32", 1, 4),
        (I64, 27, "I64", 1, 8),
        (F64, 28, "F64", 1, 8),
        (IQ1M, 29, "IQ1_M", 256, 56),
        (BF16, 30, "BF16", 1, 2),
        (TQ1_0, 34, "TQ1_0", 256, 54),
        (TQ2_0, 35, "TQ2_0", 256, 66),
        // 128 codes in 32 bytes; the tensor ends with I2S_TAIL bytes (see tensor_bytes)
        (I2S, 36, "I2_S", 128, 32),
        (MXFP4, 39, "MXFP4", 32, 17),
        (NVFP4, 40, "NVFP4", 64, 36),
        (Q1_0, 41, "Q1_0", 128, 18),
        (Q2_0, 42, "Q2_0", 64, 18),
    ]
};

impl GgmlType {
    fn traits(self) -> &'static (GgmlType, u32, &'static str, u64, u64) {
        TRAITS
            .iter()
            .find(|t| t.0 == self)
            .expect("every type has traits")
    }

    pub fn from_id(id: u32) -> Option<GgmlType> {
        TRAITS.iter().find(|t| t.1 == id).map(|t| t.0)
    }

    pub fn id(self) -> u32 {
        self.traits().1
    }

    /// ggml's name, e.g. "Q4_K", "IQ4_XS".
    pub fn name(self) -> &'static str {
        self.traits().2
    }

    /// (elements per block, bytes per block)
    pub fn block(self) -> (u64, u64) {
        let t = self.traits();
        (t.3, t.4)
    }

    /// Bytes of one row of `n` elements; `n` must be a whole number of blocks.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let (be, bb) = self.block();
        if !n.is_multiple_of(be) {
            return None;
        }
        (n / be).checked_mul(bb)
    }

    /// Bytes of a whole tensor of `n` elements with `row` elements per row. The same as
    /// rows x row_bytes, except for I2_S, whose blocks run over the flattened tensor and which
    /// ends with a scale (bitnet.cpp's ggml_nbytes: n / 4 + 32).
    pub fn tensor_bytes(self, n: u64, row: u64) -> Option<u64> {
        if self == GgmlType::I2S {
            return n.is_multiple_of(128).then(|| n / 4 + I2S_TAIL);
        }
        self.row_bytes(row)?.checked_mul(n / row.max(1))
    }

    /// Can tmac turn this type into weights (`dequantize`, the kernels)?
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q8_0 | I2S) || blocks::form(self).is_some()
    }
}

/// Quantize f32 values to ggml type `t` (Q8_0, Q4_0 or Q4_1, by ggml's reference rounding
/// rules); None for other types or a length that is not whole blocks.
pub fn quantize(t: GgmlType, x: &[f32]) -> Option<Vec<u8>> {
    if !x.len().is_multiple_of(32) {
        return None;
    }
    let f16b = |v: f32| f16::from_f32(v).to_le_bytes();
    let mut out = Vec::new();
    for b in x.chunks_exact(32) {
        match t {
            GgmlType::Q8_0 => {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16b(d));
                out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
            }
            GgmlType::Q4_0 => {
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
            GgmlType::Q4_1 => {
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
        return crate::layout::ternary::dequantize_i2s(src, dst);
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
        t if blocks::form(t).is_some() => blocks::dequantize(t, src, dst),
        _ => {
            return Err(Error::unsupported(format!(
                "tensor type {} cannot be dequantized by tmac",
                t.name()
            )))
        }
    }
    Ok(())
}
