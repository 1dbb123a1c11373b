//! AVX2 kernels (x86-64 with AVX2 and F16C). Same integer results and the same float operation
//! order as `scalar.rs`; `tests/kernels.rs` checks it on random shapes.
//!
//! LUT GEMV inner step, per 32 bytes of weights (16 rows x 2 bit-planes x 8 columns):
//! split the nibbles into two index vectors (columns 0-3 and 4-7), look up the low and the high
//! bytes of the two tables with vpshufb, and let vpmaddubsw both pair each row's two planes and
//! weight them by 2^plane. Low-byte sums are unsigned and accumulate in 16 bits (wrapping, read
//! back unsigned) until they are widened; high-byte sums are small and signed.

use super::lut::{Activations, TABLE_BYTES};
use crate::quant::lut::{Geometry, LutMatrix, Zero};
use crate::quant::q8::{Q8Matrix, Q8_BLOCK};
use std::arch::x86_64::*;

/// Chunks of 8 columns whose low-byte sums fit in 16 bits: 255 * 2 * (1 + 2 [+ 4 + 8]) per chunk.
fn flush_chunks(g: &Geometry) -> usize {
    if g.plane_pairs == 2 {
        8
    } else {
        32
    }
}

/// Integer sums of one scale group for the 16 rows of row block `rb`: rows 0-7, rows 8-15.
#[target_feature(enable = "avx2")]
unsafe fn group_ints(
    data: &[u8],
    g: &Geometry,
    tables: &[u8],
    rb: usize,
    grp: usize,
) -> (__m256i, __m256i) {
    let c0 = grp * g.group_chunks;
    let c1 = (c0 + g.group_chunks).min(g.chunks);
    debug_assert!(data.len() >= ((rb * g.chunks + c1) * g.plane_pairs) * 32);
    debug_assert!(tables.len() >= 2 * c1 * TABLE_BYTES);
    let mask = _mm256_set1_epi8(0x0F);
    // per plane pair: byte weights 2^plane for (even, odd) bytes
    let coef = [_mm256_set1_epi16(0x0201), _mm256_set1_epi16(0x0804)];
    let (mut acc_a, mut acc_b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let wp = data.as_ptr();
    let tp = tables.as_ptr();
    let mut c = c0;
    while c < c1 {
        let cend = (c + flush_chunks(g)).min(c1);
        let (mut slo, mut shi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for cc in c..cend {
            // SAFETY: table 2cc+1 and weight block (rb, cc, pp) are in bounds (debug-asserted
            // above; guaranteed by LutMatrix::validate and Activations::build_tables).
            let t = tp.add(2 * cc * TABLE_BYTES);
            let tl0 = _mm256_loadu_si256(t as *const __m256i);
            let th0 = _mm256_loadu_si256(t.add(32) as *const __m256i);
            let tl1 = _mm256_loadu_si256(t.add(64) as *const __m256i);
            let th1 = _mm256_loadu_si256(t.add(96) as *const __m256i);
            for (pp, &cf) in coef.iter().enumerate().take(g.plane_pairs) {
                let w = _mm256_loadu_si256(
                    wp.add(((rb * g.chunks + cc) * g.plane_pairs + pp) * 32) as *const __m256i,
                );
                let i0 = _mm256_and_si256(w, mask);
                let i1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), mask);
                let lo = _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_shuffle_epi8(tl0, i0), cf),
                    _mm256_maddubs_epi16(_mm256_shuffle_epi8(tl1, i1), cf),
                );
                let hi = _mm256_add_epi16(
                    _mm256_maddubs_epi16(cf, _mm256_shuffle_epi8(th0, i0)),
                    _mm256_maddubs_epi16(cf, _mm256_shuffle_epi8(th1, i1)),
                );
                slo = _mm256_add_epi16(slo, lo);
                shi = _mm256_add_epi16(shi, hi);
            }
        }
        // value = low sum (unsigned 16-bit) + 256 * high sum (signed 16-bit)
        let lo_a = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(slo));
        let lo_b = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(slo, 1));
        let hi_a = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(shi));
        let hi_b = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(shi, 1));
        acc_a = _mm256_add_epi32(acc_a, _mm256_add_epi32(lo_a, _mm256_slli_epi32(hi_a, 8)));
        acc_b = _mm256_add_epi32(acc_b, _mm256_add_epi32(lo_b, _mm256_slli_epi32(hi_b, 8)));
        c = cend;
    }
    (acc_a, acc_b)
}

/// All integer accumulators, laid out [row block][group][16] (for tests).
///
/// # Safety
/// AVX2 must be available; `act` must have its tables built for this matrix's width.
#[target_feature(enable = "avx2")]
pub unsafe fn lut_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    let g = m.geometry();
    out.clear();
    for rb in 0..g.row_blocks {
        for grp in 0..g.groups {
            let mut v = [0i32; 16];
            let (a, b) = group_ints(m.data.as_slice(), &g, &act.tables, rb, grp);
            // SAFETY: v has room for 16 i32.
            _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, a);
            _mm256_storeu_si256(v.as_mut_ptr().add(8) as *mut __m256i, b);
            out.extend_from_slice(&v);
        }
    }
}

/// y = W x for a LUT matrix (see scalar::lut_gemv for the semantics).
///
/// # Safety
/// AVX2 and F16C must be available; `act` must have its tables built for this matrix's width.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn lut_gemv(m: &LutMatrix, act: &Activations, y: &mut [f32]) {
    let g = m.geometry();
    let (data, scales) = (m.data.as_slice(), m.scales.as_slice());
    debug_assert!(scales.len() >= g.scales_len());
    for rb in 0..g.row_blocks {
        let (mut ya, mut yb) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for grp in 0..g.groups {
            let (acc_a, acc_b) = group_ints(data, &g, &act.tables, rb, grp);
            let k0 = grp * m.group;
            let (f, s) = (_mm256_set1_ps(act.scale_at(k0)), act.sum(k0, m.group));
            // SAFETY: the scales of (rb, grp) are in bounds (scales_len checked at validation).
            let sp = scales.as_ptr().add((rb * g.groups + grp) * g.scale_stride);
            let da = _mm256_cvtph_ps(_mm_loadu_si128(sp as *const __m128i));
            let db = _mm256_cvtph_ps(_mm_loadu_si128(sp.add(16) as *const __m128i));
            let (ta, tb) = match m.zero {
                Zero::Offset(o) => {
                    let os = _mm256_set1_epi32(o as i32 * s);
                    (
                        _mm256_mul_ps(da, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc_a, os))),
                        _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc_b, os))),
                    )
                }
                Zero::Affine => {
                    let ma = _mm256_cvtph_ps(_mm_loadu_si128(sp.add(32) as *const __m128i));
                    let mb = _mm256_cvtph_ps(_mm_loadu_si128(sp.add(48) as *const __m128i));
                    let sf = _mm256_set1_ps(s as f32);
                    (
                        _mm256_add_ps(
                            _mm256_mul_ps(da, _mm256_cvtepi32_ps(acc_a)),
                            _mm256_mul_ps(ma, sf),
                        ),
                        _mm256_add_ps(
                            _mm256_mul_ps(db, _mm256_cvtepi32_ps(acc_b)),
                            _mm256_mul_ps(mb, sf),
                        ),
                    )
                }
            };
            ya = _mm256_add_ps(ya, _mm256_mul_ps(f, ta));
            yb = _mm256_add_ps(yb, _mm256_mul_ps(f, tb));
        }
        let mut y16 = [0f32; 16];
        _mm256_storeu_ps(y16.as_mut_ptr(), ya);
        _mm256_storeu_ps(y16.as_mut_ptr().add(8), yb);
        let n = (m.rows - rb * 16).min(16);
        y[rb * 16..rb * 16 + n].copy_from_slice(&y16[..n]);
    }
}

/// y = W x for an 8-bit matrix (see scalar::q8_gemv for the semantics).
///
/// # Safety
/// AVX2 and F16C must be available; `act` must cover the matrix's columns.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn q8_gemv(m: &Q8Matrix, act: &Activations, y: &mut [f32]) {
    let (q, d) = m.parts();
    let st = m.strides();
    let nb = m.cols / Q8_BLOCK;
    debug_assert!(q.len() >= m.rows * nb * st.q_stride && act.a.len() >= m.cols);
    let ones = _mm256_set1_epi16(1);
    let block_scales: Vec<f32> = (0..nb).map(|b| act.scale_at(b * Q8_BLOCK)).collect();
    for (r, yr) in y.iter_mut().enumerate().take(m.rows) {
        let mut acc = _mm256_setzero_ps();
        for (b, &fa) in block_scales.iter().enumerate() {
            let i = r * nb + b;
            // SAFETY: block i's values and scale, and activations 32b..32b+32, are in bounds
            // (Q8Matrix::new checked the sizes; asserted above).
            let dp = d.as_ptr().add(i * st.d_stride);
            let sc = half::f16::from_le_bytes([*dp, *dp.add(1)]).to_f32() * fa;
            let w =
                _mm256_loadu_si256(q.as_ptr().add(i * st.q_stride + st.q_skip) as *const __m256i);
            let a = _mm256_loadu_si256(act.a.as_ptr().add(b * Q8_BLOCK) as *const __m256i);
            let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
            let s = _mm256_madd_epi16(p, ones);
            acc = _mm256_add_ps(
                acc,
                _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc)),
            );
        }
        let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let q = _mm_add_ps(h, _mm_movehl_ps(h, h));
        *yr = _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
    }
}
