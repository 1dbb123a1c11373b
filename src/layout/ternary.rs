//! Trained ternary weights (BitNet b1.58, Falcon3 1.58-bit, TriLM): recognising them exactly in
//! every form they ship in, and holding them as T-MAC LUT matrices with one scale per tensor.
//!
//! A ternary matrix is codes q = w / s + 1 in {0, 1, 2} and one f32 scale s. It is found in
//! - GGUF TQ2_0 / TQ1_0 (llama.cpp), when every block that holds a non-zero weight has the same
//!   f16 scale (what llama.cpp's quantizer writes for ternary x one scale, since d = absmax);
//! - GGUF F32 / F16 / BF16 whose values are all in {-s, 0, +s} (llama.cpp's converter output);
//! - GGUF I2_S (type 36, bitnet.cpp's x86 layout): blocks of 128 codes in 32 bytes over the
//!   flattened tensor, byte j holding elements j (bits 7-6), j+32 (5-4), j+64 (3-2), j+96 (1-0),
//!   codes 0, 1, 2 = -1, 0, +1, then the f32 scale in a 32-byte tail;
//! - Hugging Face uint8 weights packed 4 per byte along the output dimension (`hf_codes`).
//!
//! As a LUT matrix the codes get scale 1 and one scale group spanning the whole row, so the
//! activations are quantized once per token (int8, absmax 127), as BitNet b1.58 was trained; the
//! tensor scale multiplies the matrix output (with llama.cpp's optional `*.scale` tensor).

use super::blocks;
use super::ggml::{GgmlType, I2S_TAIL};
use super::lut::{self, LutMatrix, Zero};
use crate::error::{Error, Result};
use half::{bf16, f16};

/// Elements per I2_S block (x86 layout: 128 codes in 32 bytes).
pub(crate) const I2S_BLOCK: usize = 128;

/// An exactly ternary matrix: `w[r][c] = (codes[r * cols + c] - 1) * scale`.
pub struct Ternary {
    pub rows: usize,
    pub cols: usize,
    pub codes: Vec<u8>,
    pub scale: f32,
}

impl Ternary {
    /// The codes as a LUT matrix with scale 1, one scale group per row (per-token activations).
    pub fn to_lut(&self) -> LutMatrix {
        let kp = self.cols.div_ceil(8) * 8;
        let cols = self.cols;
        lut::pack(
            self.rows,
            self.cols,
            2,
            kp,
            Zero::Offset(1),
            true,
            |r, c| self.codes[r * cols + c],
            |_, _| (f16::ONE, f16::ZERO),
        )
    }

    /// The weights as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        self.codes
            .iter()
            .map(|&q| (q as i32 - 1) as f32 * self.scale)
            .collect()
    }
}

/// The codes and scale of an I2_S tensor of `n` elements.
pub(crate) fn i2s_codes(data: &[u8], n: usize) -> Result<(Vec<u8>, f32)> {
    if !n.is_multiple_of(I2S_BLOCK) {
        return Err(Error::format(format!(
            "I2_S tensor of {n} elements is not a whole number of {I2S_BLOCK}-element blocks"
        )));
    }
    let packed = n / 4;
    if data.len() as u64 != packed as u64 + I2S_TAIL {
        return Err(Error::format(format!(
            "I2_S data of {} bytes does not hold {n} elements ({} bytes of codes + {I2S_TAIL})",
            data.len(),
            packed
        )));
    }
    let s = &data[packed..packed + 4];
    let scale = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    if !scale.is_finite() {
        return Err(Error::format(format!("I2_S scale is {scale}")));
    }
    let mut codes = vec![0u8; n];
    for (blk, out) in data[..packed]
        .chunks_exact(32)
        .zip(codes.chunks_exact_mut(I2S_BLOCK))
    {
        for (j, &b) in blk.iter().enumerate() {
            for g in 0..4 {
                out[g * 32 + j] = (b >> (6 - 2 * g)) & 3;
            }
        }
    }
    if let Some(i) = codes.iter().position(|&q| q > 2) {
        return Err(Error::format(format!(
            "I2_S element {i} has code 3, which is not ternary"
        )));
    }
    Ok((codes, scale))
}

/// Dequantize a whole I2_S tensor.
pub(crate) fn dequantize_i2s(src: &[u8], dst: &mut [f32]) -> Result<()> {
    let (codes, scale) = i2s_codes(src, dst.len())?;
    for (d, q) in dst.iter_mut().zip(codes) {
        *d = (q as i32 - 1) as f32 * scale;
    }
    Ok(())
}

/// Pack codes (row-major, a multiple of 128 of them) and a scale as I2_S, as bitnet.cpp's
/// `quantize_i2_s` lays them out on x86.
pub(crate) fn encode_i2s(codes: &[u8], scale: f32) -> Vec<u8> {
    assert!(codes.len().is_multiple_of(I2S_BLOCK));
    let mut out = vec![0u8; codes.len() / 4 + I2S_TAIL as usize];
    for (blk, q) in out.chunks_exact_mut(32).zip(codes.chunks_exact(I2S_BLOCK)) {
        for (j, b) in blk.iter_mut().enumerate() {
            for g in 0..4 {
                *b |= (q[g * 32 + j] & 3) << (6 - 2 * g);
            }
        }
    }
    let n = codes.len() / 4;
    out[n..n + 4].copy_from_slice(&scale.to_le_bytes());
    out
}

/// Codes of a Hugging Face BitNet weight: `packed` is (rows / 4, cols) uint8, and bit pair i of
/// `packed[j][c]` is the code of row `i * rows / 4 + j` (transformers' `unpack_weights`).
pub(crate) fn hf_codes(packed: &[u8], packed_rows: usize, cols: usize) -> Result<Vec<u8>> {
    if packed.len() != packed_rows * cols {
        return Err(Error::format(format!(
            "packed ternary weight of {} bytes is not {packed_rows} x {cols}",
            packed.len()
        )));
    }
    let mut codes = vec![0u8; packed.len() * 4];
    for (j, row) in packed.chunks_exact(cols).enumerate() {
        for i in 0..4 {
            let out = &mut codes[(i * packed_rows + j) * cols..][..cols];
            for (o, &b) in out.iter_mut().zip(row) {
                *o = (b >> (2 * i)) & 3;
            }
        }
    }
    if let Some(i) = codes.iter().position(|&q| q > 2) {
        return Err(Error::format(format!(
            "packed ternary weight: element {i} has code 3, which is not ternary"
        )));
    }
    Ok(codes)
}

/// Ternarize full-precision weights as BitNet b1.58 does at inference (and llama.cpp's
/// converter at conversion): s = mean |w| (at least 1e-5), q = clamp(round(w / s), -1, 1),
/// with llama.cpp's float steps (w * (1/s), and the value q / (1/s)).
pub(crate) fn absmean(w: &[f32], rows: usize, cols: usize) -> Ternary {
    let mean = (w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len().max(1) as f64) as f32;
    let iscale = 1.0 / mean.max(1e-5);
    let codes = w
        .iter()
        .map(|&v| ((v * iscale).round_ties_even().clamp(-1.0, 1.0) + 1.0) as u8)
        .collect();
    Ternary {
        rows,
        cols,
        codes,
        scale: 1.0 / iscale,
    }
}

/// The name of llama.cpp's output-scale tensor for `matrix` (`blk.0.attn_q.weight` ->
/// `blk.0.attn_q.scale`).
pub(crate) fn scale_name(matrix: &str) -> String {
    format!("{}.scale", matrix.strip_suffix(".weight").unwrap_or(matrix))
}

/// Floats as an exactly ternary matrix, if they are one (all -s, 0 or +s for one s).
pub(crate) fn from_f32s(w: &[f32], rows: usize, cols: usize) -> Option<Ternary> {
    floats(w.len(), |i| w[i]).map(|(codes, scale)| Ternary {
        rows,
        cols,
        codes,
        scale,
    })
}

/// The tensor as an exactly ternary matrix, if it is one (None when its values are not all
/// -s, 0 or +s for one s, or its type cannot hold that). I2_S is always ternary.
pub(crate) fn from_tensor(
    typ: GgmlType,
    data: &[u8],
    rows: usize,
    cols: usize,
) -> Result<Option<Ternary>> {
    let n = rows * cols;
    let t = |codes, scale| {
        Some(Ternary {
            rows,
            cols,
            codes,
            scale,
        })
    };
    Ok(match typ {
        GgmlType::I2S => {
            let (codes, scale) = i2s_codes(data, n)?;
            t(codes, scale)
        }
        GgmlType::TQ2_0 | GgmlType::TQ1_0 => tq_blocks(typ, data, n).and_then(|(c, s)| t(c, s)),
        GgmlType::F32 => floats(n, |i| {
            let b = &data[4 * i..4 * i + 4];
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })
        .and_then(|(c, s)| t(c, s)),
        GgmlType::F16 => floats(n, |i| {
            f16::from_le_bytes([data[2 * i], data[2 * i + 1]]).to_f32()
        })
        .and_then(|(c, s)| t(c, s)),
        GgmlType::BF16 => floats(n, |i| {
            bf16::from_le_bytes([data[2 * i], data[2 * i + 1]]).to_f32()
        })
        .and_then(|(c, s)| t(c, s)),
        _ => None,
    })
}

/// Codes of TQ1_0/TQ2_0 blocks, and their common scale: every block with a non-zero weight
/// must have the same f16 d (blocks of zeros, or with d = 0, carry no scale).
fn tq_blocks(typ: GgmlType, data: &[u8], n: usize) -> Option<(Vec<u8>, f32)> {
    let (be, bb) = typ.block();
    let (be, bb) = (be as usize, bb as usize);
    if !n.is_multiple_of(be) || data.len() != n / be * bb {
        return None;
    }
    let mut codes = vec![1u8; n];
    let mut d_bits: Option<u16> = None;
    let mut b = blocks::Block::default();
    for (blk, out) in data.chunks_exact(bb).zip(codes.chunks_exact_mut(be)) {
        let d = u16::from_le_bytes([blk[bb - 2], blk[bb - 1]]);
        if f16::from_bits(d).to_f32() == 0.0 {
            continue; // every weight of this block is zero: codes stay 1
        }
        blocks::decode(typ, blk, &mut b);
        out.copy_from_slice(&b.codes[..be]);
        if out.iter().any(|&q| q > 2) {
            return None;
        }
        if out.iter().all(|&q| q == 1) {
            continue;
        }
        match d_bits {
            None => d_bits = Some(d),
            Some(b) if b == d => {}
            Some(_) => return None,
        }
    }
    let d = f16::from_bits(d_bits.unwrap_or(0)).to_f32();
    d.is_finite().then_some((codes, d))
}

/// Codes and scale of n float values, if they are all -s, 0 or +s for one finite s > 0.
fn floats(n: usize, val: impl Fn(usize) -> f32) -> Option<(Vec<u8>, f32)> {
    let mut s = 0f32;
    let mut codes = Vec::new();
    for i in 0..n {
        let v = val(i);
        let q = if v == 0.0 {
            1
        } else if v.abs() == s {
            if v > 0.0 {
                2
            } else {
                0
            }
        } else if s == 0.0 && v.is_finite() {
            s = v.abs();
            if v > 0.0 {
                2
            } else {
                0
            }
        } else {
            return None;
        };
        if codes.is_empty() {
            codes.reserve_exact(n);
        }
        codes.push(q);
    }
    Some((codes, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i2s_round_trips_and_matches_the_documented_bit_order() {
        let codes: Vec<u8> = (0..256).map(|i| ((i * 7 + i / 5) % 3) as u8).collect();
        let data = encode_i2s(&codes, 0.25);
        assert_eq!(data.len(), 64 + 32);
        // byte j of a block: element j in bits 7-6, j+32 in 5-4, j+64 in 3-2, j+96 in 1-0
        let b = data[5];
        assert_eq!(b >> 6, codes[5]);
        assert_eq!((b >> 4) & 3, codes[37]);
        assert_eq!((b >> 2) & 3, codes[69]);
        assert_eq!(b & 3, codes[101]);
        let (back, s) = i2s_codes(&data, 256).unwrap();
        assert_eq!((back, s), (codes, 0.25));
        assert!(i2s_codes(&data[..95], 256).is_err());
        assert!(i2s_codes(&data, 128).is_err());
        let mut bad = data.clone();
        bad[0] |= 0xC0;
        assert!(i2s_codes(&bad, 256).is_err());
    }

    #[test]
    fn hf_unpacking_puts_bit_pair_i_in_row_block_i() {
        // 8 rows x 2 cols packed as 2 x 2 bytes
        let packed = [0b10_01_00_10u8, 0b00_00_00_01, 0b01_10_10_00, 0b10_10_10_10];
        let c = hf_codes(&packed, 2, 2).unwrap();
        // row i * 2 + j, col c = bits 2i of packed[j][c]
        assert_eq!(&c[0..2], &[2, 1]); // i=0, j=0
        assert_eq!(&c[2..4], &[0, 2]); // i=0, j=1
        assert_eq!(&c[4..6], &[0, 0]); // i=1, j=0
        assert_eq!(&c[12..14], &[2, 0]); // i=3, j=0
        assert!(hf_codes(&[3], 1, 1).is_err());
    }

    #[test]
    fn float_tensors_are_ternary_only_with_one_magnitude() {
        let f = |v: &[f32]| floats(v.len(), |i| v[i]);
        assert_eq!(f(&[0.5, -0.5, 0.0, -0.0]), Some((vec![2, 0, 1, 1], 0.5)));
        assert_eq!(f(&[0.5, 0.25]), None);
        assert_eq!(f(&[0.0, f32::NAN]), None);
        assert_eq!(f(&[0.0, 0.0]), Some((vec![1, 1], 0.0)));
    }
}
