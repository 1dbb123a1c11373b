//! AVX-512 kernels (F, BW, VL, VNNI). The LUT GEMV: the AVX2 kernel's steps with two row
//! blocks in one 512-bit register, so each vpshufb and vpmaddubsw does the work of two; the
//! shuffle port, the AVX2 kernel's limit, then does half as many instructions per weight
//! byte. The batched 8-bit GEMM (prompts): two inputs per 512-bit register. The batched LUT
//! and codebook GEMMs: the AVX2 kernels with vpdpbusd for their int8 dot products
//! (avx2::dpbusd). Same integer sums and float steps, so the same outputs bit for bit as
//! `avx2.rs` and `scalar.rs` (`tests/kernels.rs`, `tests/quant_types.rs`). Odd code widths in
//! the GEMV (their lone plane already pairs row blocks in AVX2, and wider registers measured
//! no faster), a last odd row block or input, the scales, and the 8-bit and codebook GEMVs
//! are the AVX2 code, which every AVX-512 CPU runs.

use super::avx2::{self, GemvTile};
use super::lut::{Activations, Tables, TABLE8_BYTES, TABLE_BYTES};
use crate::layout::iq4::Iq4Matrix;
use crate::layout::lut::{Geometry, LutMatrix};
use crate::layout::q8::{Q8Matrix, Q8_BLOCK};
use std::arch::x86_64::*;

/// Integer sums of one scale group for row blocks `rb0` and `rb0 + 1`, each as (rows 0-7,
/// rows 8-15), as `avx2::group_ints::<BITS, 2, I8>` gives them, BITS even. Per chunk, each plane pair
/// of both blocks is one register: block rb0's 32 bytes in lanes 0-1, rb0 + 1's in 2-3, and
/// each table broadcast to all four lanes.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn pair_ints<const BITS: usize, const I8: bool>(
    data: &[u8],
    g: &Geometry,
    tables: &[u8],
    rb0: usize,
    grp: usize,
    prefetch: usize,
) -> [[__m256i; 2]; 2] {
    let c0 = grp * g.group_chunks;
    let c1 = (c0 + g.group_chunks).min(g.chunks);
    let pairs = BITS / 2;
    let (table_bytes, flush) = if I8 {
        (TABLE8_BYTES, super::lut::flush_chunks8(BITS))
    } else {
        (TABLE_BYTES, super::lut::flush_chunks(BITS))
    };
    debug_assert!(BITS == g.bits && BITS.is_multiple_of(2));
    debug_assert!(data.len() >= ((rb0 + 1) * g.chunks + c1) * g.chunk_bytes);
    debug_assert!(tables.len() >= 2 * c1 * table_bytes);
    let mask = _mm512_set1_epi8(0x0F);
    // per plane pair: byte weights 2^plane for (even, odd) bytes
    let coef = [
        _mm512_set1_epi16(0x0201),
        _mm512_set1_epi16(0x0804),
        _mm512_set1_epi16(0x2010),
    ];
    // 32-bit sums, rows 0-15 of block rb0 then of rb0 + 1
    let mut acc = [_mm512_setzero_si512(); 2];
    let (wp, tp) = (data.as_ptr(), tables.as_ptr());
    let mut c = c0;
    while c < c1 {
        let cend = (c + flush).min(c1);
        // 16-bit sums as avx2::group_ints keeps them, block rb0 in the low half
        let (mut slo, mut shi) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for cc in c..cend {
            // SAFETY: tables 2cc, 2cc+1 and the weights of blocks rb0, rb0 + 1 at chunk cc are
            // in bounds (debug-asserted above; guaranteed by LutMatrix::validate and
            // build_tables). The prefetch address may run past the end; it is never read.
            let t = tp.add(2 * cc * table_bytes);
            let bcast = |o: usize| _mm512_broadcast_i32x4(_mm_loadu_si128(t.add(o) as _));
            let (tl0, tl1) = (bcast(0), bcast(table_bytes));
            let (th0, th1) = if I8 {
                (tl0, tl1)
            } else {
                (bcast(16), bcast(48))
            };
            let blk = |r: usize| wp.add(((rb0 + r) * g.chunks + cc) * 16 * BITS);
            let (b0, b1) = (blk(0), blk(1));
            _mm_prefetch::<_MM_HINT_T1>(b0.wrapping_add(prefetch) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(b1.wrapping_add(prefetch) as *const i8);
            for (pp, &cf) in coef.iter().enumerate().take(pairs) {
                let w = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu_si256(b0.add(pp * 32) as _)),
                    _mm256_loadu_si256(b1.add(pp * 32) as _),
                );
                let i0 = _mm512_and_si512(w, mask);
                let i1 = _mm512_and_si512(_mm512_srli_epi16::<4>(w), mask);
                // signed bytes (int8 entries, exact high bytes) go second to vpmaddubsw
                let signed = |t0, t1| {
                    _mm512_add_epi16(
                        _mm512_maddubs_epi16(cf, _mm512_shuffle_epi8(t0, i0)),
                        _mm512_maddubs_epi16(cf, _mm512_shuffle_epi8(t1, i1)),
                    )
                };
                if I8 {
                    slo = _mm512_add_epi16(slo, signed(tl0, tl1));
                    continue;
                }
                let lo = _mm512_add_epi16(
                    _mm512_maddubs_epi16(_mm512_shuffle_epi8(tl0, i0), cf),
                    _mm512_maddubs_epi16(_mm512_shuffle_epi8(tl1, i1), cf),
                );
                slo = _mm512_add_epi16(slo, lo);
                shi = _mm512_add_epi16(shi, signed(th0, th1));
            }
        }
        // exact: value = low sum (unsigned 16-bit) + 256 * high sum (signed 16-bit);
        // int8: the signed 16-bit sum
        for (b, a) in acc.iter_mut().enumerate() {
            let half = |v: __m512i| match b {
                0 => _mm512_castsi512_si256(v),
                _ => _mm512_extracti64x4_epi64::<1>(v),
            };
            let v = if I8 {
                _mm512_cvtepi16_epi32(half(slo))
            } else {
                let hi = _mm512_slli_epi32::<8>(_mm512_cvtepi16_epi32(half(shi)));
                _mm512_add_epi32(_mm512_cvtepu16_epi32(half(slo)), hi)
            };
            *a = _mm512_add_epi32(*a, v);
        }
        c = cend;
    }
    acc.map(|a| [_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64::<1>(a)])
}

/// The sums of row blocks `rb0`, `rb0 + 1` with the kind of tables `act` holds (for tests).
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn ints<const BITS: usize>(
    data: &[u8],
    g: &Geometry,
    act: &Activations,
    rb0: usize,
    grp: usize,
) -> [[__m256i; 2]; 2] {
    let t = &act.tables;
    match act.tables_built() {
        Some(Tables::Int8) => pair_ints::<BITS, true>(data, g, t, rb0, grp, 0),
        _ => pair_ints::<BITS, false>(data, g, t, rb0, grp, 0),
    }
}

/// All integer accumulators, laid out `[row block][group][16]` (for tests): as the GEMV
/// computes them, row-block pairs of even widths here, the rest by the AVX2 kernel.
///
/// # Safety
/// AVX-512 BW, AVX2 and F16C must be available; `act` must have its tables built for this
/// matrix's width.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
pub(crate) unsafe fn lut_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    avx2::lut_ints(m, act, out);
    let g = m.geometry();
    let d = m.data.as_slice();
    for (rb, n) in super::row_tiles(0..g.row_blocks, 2) {
        if n != 2 || m.bits % 2 == 1 {
            continue;
        }
        for grp in 0..g.groups {
            let ints = match m.bits {
                2 => ints::<2>(d, &g, act, rb, grp),
                4 => ints::<4>(d, &g, act, rb, grp),
                6 => ints::<6>(d, &g, act, rb, grp),
                _ => continue,
            };
            for (r, [a, b]) in ints.iter().enumerate() {
                let v = &mut out[((rb + r) * g.groups + grp) * 16..][..16];
                // SAFETY: v has room for 16 i32.
                _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, *a);
                _mm256_storeu_si256(v.as_mut_ptr().add(8) as *mut __m256i, *b);
            }
        }
    }
}

/// `lut_gemv` with the code width and the kinds of tables and scales fixed.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
unsafe fn lut_gemv_bits<const BITS: usize, const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &super::Knobs,
) {
    debug_assert!(y.len() >= m.rows);
    let (t, data, pf) = (GemvTile::new(m, act), m.data.as_slice(), knobs.prefetch);
    for (rb, n) in super::row_tiles(rbs, knobs.row_tile) {
        match n {
            2 if BITS.is_multiple_of(2) => t.run::<2, I8, SUB>(rb, y, |grp| {
                pair_ints::<BITS, I8>(data, &t.g, &act.tables, rb, grp, pf)
            }),
            2 => t.run::<2, I8, SUB>(rb, y, |grp| {
                avx2::group_ints::<BITS, 2, I8>(data, &t.g, &act.tables, rb, grp, pf)
            }),
            _ => t.run::<1, I8, SUB>(rb, y, |grp| {
                avx2::group_ints::<BITS, 1, I8>(data, &t.g, &act.tables, rb, grp, pf)
            }),
        }
    }
}

/// `lut_gemv` with the kinds of tables and scales fixed.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
unsafe fn lut_gemv_kind<const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &super::Knobs,
) {
    match m.bits {
        1 => lut_gemv_bits::<1, I8, SUB>(m, act, y, rbs, knobs),
        2 => lut_gemv_bits::<2, I8, SUB>(m, act, y, rbs, knobs),
        3 => lut_gemv_bits::<3, I8, SUB>(m, act, y, rbs, knobs),
        4 => lut_gemv_bits::<4, I8, SUB>(m, act, y, rbs, knobs),
        5 => lut_gemv_bits::<5, I8, SUB>(m, act, y, rbs, knobs),
        _ => lut_gemv_bits::<6, I8, SUB>(m, act, y, rbs, knobs),
    }
}

/// y = W x for a LUT matrix, row blocks `rbs` (see scalar::lut_gemv for the semantics).
///
/// # Safety
/// AVX-512 BW, AVX2 and F16C must be available; `act` must have its tables built for this
/// matrix's width.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
pub(crate) unsafe fn lut_gemv(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &super::Knobs,
) {
    match (act.tables_built() == Some(Tables::Int8), m.sup.is_some()) {
        (false, false) => lut_gemv_kind::<false, false>(m, act, y, rbs, knobs),
        (false, true) => lut_gemv_kind::<false, true>(m, act, y, rbs, knobs),
        (true, false) => lut_gemv_kind::<true, false>(m, act, y, rbs, knobs),
        (true, true) => lut_gemv_kind::<true, true>(m, act, y, rbs, knobs),
    }
}

/// Y = W X for inputs quantized without tables (see avx2::lut_gemm): the AVX2 batched kernel
/// with vpdpbusd for its int8 dot products.
///
/// # Safety
/// As avx2::lut_gemm, and AVX-512 VNNI and VL must be available.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn lut_gemm(m: &LutMatrix, acts: &[Activations], ys: &mut [f32]) {
    match m.sup.is_some() {
        false => avx2::gemm_sub::<false, true>(m, acts, ys),
        true => avx2::gemm_sub::<true, true>(m, acts, ys),
    }
}

/// Y = W X for an 8-bit matrix (see avx2::q8_gemm): the inputs in pairs, side by side in one
/// 512-bit register (lanes 0-7 the first input's 256-bit accumulator in avx2, 8-15 the
/// second's), so each block's integer and float steps are one instruction for two inputs. An
/// odd last input runs avx2's code. Same bits.
///
/// # Safety
/// As avx2::q8_gemm, and AVX-512 VNNI and VL must be available.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn q8_gemm(m: &Q8Matrix, acts: &[Activations], ys: &mut [f32]) {
    let nb = m.cols / Q8_BLOCK;
    let pairs = acts.len() / 2;
    // [pair][block]: the two inputs' 32 activations each, plus 128 (vpdpbusd's unsigned side),
    // and their block scales in 8 lanes each
    let mut xu = vec![0u8; pairs * nb * 64];
    let mut scales = vec![0f32; pairs * nb * 16];
    for (t, act) in acts[..2 * pairs].iter().enumerate() {
        let (p, h) = (t / 2, t % 2);
        for (b, x) in act.a[..m.cols].chunks_exact(Q8_BLOCK).enumerate() {
            let o = &mut xu[(p * nb + b) * 64 + 32 * h..][..32];
            for (o, &x) in o.iter_mut().zip(x) {
                *o = x as u8 ^ 0x80;
            }
        }
        for (b, s) in act.block_scales(Q8_BLOCK, nb).into_iter().enumerate() {
            scales[(p * nb + b) * 16 + 8 * h..][..8].fill(s);
        }
    }
    // rows in fours, so that each load of the activations serves four rows
    let mut r0 = 0;
    while r0 < m.rows {
        let nr = if m.rows - r0 >= 4 { 4 } else { 1 };
        let mut p0 = 0;
        while p0 < pairs {
            let n = (pairs - p0).min(4);
            let out = match (nr, n) {
                (4, 4) => q8_pairs::<4, 4>(m, &xu, &scales, p0, r0),
                (4, 3) => q8_pairs::<4, 3>(m, &xu, &scales, p0, r0),
                (4, 2) => q8_pairs::<4, 2>(m, &xu, &scales, p0, r0),
                (4, _) => q8_pairs::<4, 1>(m, &xu, &scales, p0, r0),
                (_, 4) => q8_pairs::<1, 4>(m, &xu, &scales, p0, r0),
                (_, 3) => q8_pairs::<1, 3>(m, &xu, &scales, p0, r0),
                (_, 2) => q8_pairs::<1, 2>(m, &xu, &scales, p0, r0),
                _ => q8_pairs::<1, 1>(m, &xu, &scales, p0, r0),
            };
            for (r, out) in out[..nr].iter().enumerate() {
                for (t, &v) in out[..2 * n].iter().enumerate() {
                    ys[(2 * p0 + t) * m.rows + r0 + r] = v;
                }
            }
            p0 += n;
        }
        r0 += nr;
    }
    if acts.len() % 2 == 1 {
        let t = acts.len() - 1;
        avx2::q8_gemm_with::<true>(m, &acts[t..], &mut ys[t * m.rows..]);
    }
}

/// Rows r0..r0 + R of an 8-bit matrix for the NP input pairs from pair p0 (`xu` and `scales`
/// as `q8_gemm` lays them out): avx2::q8_row_inputs's steps, two inputs per register.
/// vpdpbusd multiplies unsigned by signed bytes: it takes the activations plus 128 and the
/// weights as they are, and starts each lane from -128 times the sum of its 4 weights, so it
/// ends at the same sum of x w.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_pairs<const R: usize, const NP: usize>(
    m: &Q8Matrix,
    xu: &[u8],
    scales: &[f32],
    p0: usize,
    r0: usize,
) -> [[f32; 8]; 4] {
    let (q, d) = m.parts();
    let st = m.strides();
    let nb = m.cols / Q8_BLOCK;
    assert!(r0 + R <= m.rows && R <= 4);
    assert!(xu.len() >= (p0 + NP) * nb * 64 && scales.len() >= (p0 + NP) * nb * 16);
    let (xp, sp) = (xu.as_ptr(), scales.as_ptr());
    let bias = _mm512_set1_epi8(-128);
    let mut acc = [[_mm512_setzero_ps(); NP]; R];
    for b in 0..nb {
        // SAFETY: rows r0..r0 + R exist (asserted), so do their blocks b (Q8Matrix::new
        // checked the sizes); the activations and scales of pairs p0..p0 + NP are in `xu` and
        // `scales` (asserted above).
        let w: [(__m512, __m512i, __m512i); R] = std::array::from_fn(|r| {
            let i = (r0 + r) * nb + b;
            let qp = q.as_ptr().add(i * st.q_stride + st.q_skip);
            let dw = _mm512_set1_ps(avx2::f16_to_f32(d.as_ptr().add(i * st.d_stride)));
            let w = _mm512_broadcast_i64x4(_mm256_loadu_si256(qp as *const __m256i));
            let start = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, w),
            );
            (dw, w, start)
        });
        for p in 0..NP {
            let at = (p0 + p) * nb + b;
            let x = _mm512_loadu_si512(xp.add(at * 64) as *const _);
            let bs = _mm512_loadu_ps(sp.add(at * 16));
            for (acc, &(dw, w, start)) in acc.iter_mut().zip(&w) {
                let s = _mm512_dpbusd_epi32(start, x, w);
                let sc = _mm512_mul_ps(dw, bs);
                acc[p] = _mm512_add_ps(acc[p], _mm512_mul_ps(_mm512_cvtepi32_ps(s), sc));
            }
        }
    }
    let mut out = [[0f32; 8]; 4];
    for (out, acc) in out.iter_mut().zip(&acc) {
        for (p, acc) in acc.iter().enumerate() {
            out[2 * p] = avx2::reduce8(_mm512_castps512_ps256(*acc));
            let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*acc));
            out[2 * p + 1] = avx2::reduce8(_mm256_castpd_ps(hi));
        }
    }
    out
}

/// Y = W X for a codebook matrix (see avx2::iq4_gemm), with vpdpbusd for the dot products.
///
/// # Safety
/// As avx2::iq4_gemm, and AVX-512 VNNI and VL must be available.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn iq4_gemm(
    m: &Iq4Matrix,
    acts: &[Activations],
    ys: &mut [f32],
    knobs: &super::Knobs,
) {
    avx2::iq4_gemm_with::<true>(m, acts, ys, knobs)
}

/// The batched kernel's integer sums for one input, `[row block][group][16]` (for tests).
///
/// # Safety
/// As `lut_gemm`.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn tile_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    avx2::tile_ints_with::<true>(m, act, out)
}
