//! The f32 reference kernels. Sums run in a fixed order over 16 independent lanes, so the
//! compiler can vectorize them without reassociating, and the result is the same bit for bit
//! on every CPU. On x86-64 the same code is also compiled with AVX2 enabled (wider vectors, the
//! same operations in the same order, no fused multiply-adds) and used where the caller's `Isa`
//! is avx2 or avx512 (so `scalar` runs the portable code, as for every other kernel).

const LANES: usize = 16;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m256;

use super::Isa;

/// An element of a key or value row: f32, or the bits of an f16 (a KV cache in f16). Reading
/// one as f32 is exact, so a kernel computes the same on either once the element is read.
pub(crate) trait Elem: Copy {
    fn get(self) -> f32;
    /// Elements p..p+8 as f32.
    ///
    /// # Safety
    /// AVX2 and F16C must be available and p..p+8 readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> __m256;
}

impl Elem for f32 {
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const f32) -> __m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl Elem for u16 {
    #[inline(always)]
    fn get(self) -> f32 {
        half::f16::from_bits(self).to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const u16) -> __m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

/// f32 to f16 bits, rounded to nearest even (the KV cache in f16).
pub(crate) fn to_f16(x: &[f32], out: &mut [u16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = half::f16::from_f32(v).to_bits();
    }
}

#[inline(always)]
fn dot_lanes<E: Elem>(a: &[f32], b: &[E]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let mut acc = [0f32; LANES];
    let (a_main, a_tail) = a[..n].split_at(n - n % LANES);
    let (b_main, b_tail) = b[..n].split_at(n - n % LANES);
    for (x, y) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l].get();
        }
    }
    for (l, (x, y)) in a_tail.iter().zip(b_tail).enumerate() {
        acc[l] += x * y.get();
    }
    // pairwise reduction in a fixed order
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    acc[0]
}

/// `dot_lanes` with explicit AVX2: lanes 0-7 and 8-15 in two registers, multiply then add
/// (no FMA), the tail and the pairwise reduction in the same order, so the same bits.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dot_avx2<E: Elem>(a: &[f32], b: &[E]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let main = n - n % LANES;
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    while i < main {
        // SAFETY: i + 16 <= main <= n, within both slices.
        let m0 = _mm256_mul_ps(_mm256_loadu_ps(pa.add(i)), E::load8(pb.add(i)));
        let m1 = _mm256_mul_ps(_mm256_loadu_ps(pa.add(i + 8)), E::load8(pb.add(i + 8)));
        lo = _mm256_add_ps(lo, m0);
        hi = _mm256_add_ps(hi, m1);
        i += LANES;
    }
    finish_avx2(lo, hi, &a[main..n], &b[main..n])
}

/// The end of `dot_avx2`: the tail of fewer than 16 elements added into the lane sums `lo`
/// (lanes 0-7) and `hi` (8-15), then the pairwise reduction.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn finish_avx2<E: Elem>(lo: __m256, hi: __m256, a: &[f32], b: &[E]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [0f32; LANES];
    _mm256_storeu_ps(acc.as_mut_ptr(), lo);
    _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi);
    for (l, (x, y)) in a.iter().zip(b).enumerate() {
        acc[l] += x * y.get();
    }
    let v = _mm256_add_ps(
        _mm256_loadu_ps(acc.as_ptr()),
        _mm256_loadu_ps(acc.as_ptr().add(8)),
    );
    let u = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let u = _mm_add_ps(u, _mm_movehl_ps(u, u));
    _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)))
}

/// y += a * x (the attention's weighted sum of values).
#[inline(always)]
fn axpy_lanes<E: Elem>(a: f32, x: &[E], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi.get();
    }
}

/// y = W x for a row-major (rows, cols) matrix W, each y[r] `dot_lanes(W[r], x)`; `prefetch`
/// is how many bytes ahead of the weights to ask for (0 = none; the AVX2 path uses it).
pub(crate) fn matvec(w: &[f32], cols: usize, x: &[f32], y: &mut [f32], prefetch: usize, isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa.float_avx2() {
        // SAFETY: the CPU has AVX2 (isa says so).
        return unsafe { matvec_avx2(w, cols, x, y, prefetch) };
    }
    let _ = (prefetch, isa);
    matvec_lanes(w, cols, x, y, dot_lanes::<f32>)
}

/// `matvec` with AVX2, four rows at a time: four weight streams in flight and x loaded once for
/// them (an f32 matrix is read at the memory's speed only with several streams and a
/// prefetch well ahead: SmolLM2 f32 decode 21.4 -> 27.3 tok/s, one row at a time without
/// prefetch before). Each row's lane sums are `dot_avx2`'s, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn matvec_avx2(w: &[f32], cols: usize, x: &[f32], y: &mut [f32], prefetch: usize) {
    use std::arch::x86_64::*;
    const R: usize = 4;
    let n = cols.min(x.len());
    let main = n - n % LANES;
    let rows = y.len().min(w.len() / cols.max(1));
    let full = rows - rows % R;
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    for r0 in (0..full).step_by(R) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let mut i = 0;
        while i < main {
            // SAFETY: rows r0..r0 + R < rows lie in w, and i + 16 <= main <= cols.
            let (x0, x1) = (_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(px.add(i + 8)));
            for r in 0..R {
                let p = pw.add((r0 + r) * cols + i);
                if prefetch > 0 {
                    _mm_prefetch::<_MM_HINT_T0>((p as *const i8).wrapping_add(prefetch));
                }
                lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(x0, _mm256_loadu_ps(p)));
                hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(x1, _mm256_loadu_ps(p.add(8))));
            }
            i += LANES;
        }
        for r in 0..R {
            let row = &w[(r0 + r) * cols..][..n];
            y[r0 + r] = finish_avx2(lo[r], hi[r], &x[main..n], &row[main..n]);
        }
    }
    let tail = full * cols;
    // SAFETY: this function runs only where AVX2 is (its caller checked).
    matvec_lanes(&w[tail..], cols, x, &mut y[full..], |a, b| unsafe {
        dot_avx2::<f32>(a, b)
    })
}

/// Y = W X for T inputs: `xs` holds T rows of `cols`, `ys` T rows of W's row count; every
/// output is `matvec`'s, bit for bit.
pub(crate) fn matmul(
    w: &[f32],
    cols: usize,
    xs: &[f32],
    ys: &mut [f32],
    prefetch: usize,
    isa: Isa,
) {
    let t = xs.len() / cols.max(1);
    let rows = ys.len() / t.max(1);
    #[cfg(target_arch = "x86_64")]
    if isa.float_avx512() && t > 1 && w.len() >= rows * cols {
        // SAFETY: the CPU has AVX-512 F and AVX2 (isa says so); W holds rows x cols.
        return unsafe { matmul_avx512(w, cols, xs, ys, rows) };
    }
    for (x, y) in xs.chunks_exact(cols).zip(ys.chunks_exact_mut(rows)) {
        matvec(w, cols, x, y, prefetch, isa);
    }
}

/// `matmul` with AVX-512 in blocks of 4 rows by 6 inputs: the 16 lanes of `dot_lanes` in one
/// register per (row, input), so each weight load serves 6 inputs and each input load 4 rows
/// (a prompt is compute-bound where a single input is memory-bound). The lane sums are
/// `dot_avx2`'s, split into its two halves for the same tail and reduction. A last block of
/// fewer rows or inputs repeats the last one and drops the copies' outputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,avx512f")]
unsafe fn matmul_avx512(w: &[f32], cols: usize, xs: &[f32], ys: &mut [f32], rows: usize) {
    use std::arch::x86_64::*;
    const B: usize = 4;
    const BT: usize = 6;
    let n = xs.len() / cols;
    let main = cols - cols % LANES;
    for r0 in (0..rows).step_by(B) {
        let row: [&[f32]; B] = std::array::from_fn(|i| &w[(r0 + i).min(rows - 1) * cols..][..cols]);
        for t0 in (0..n).step_by(BT) {
            let x: [&[f32]; BT] =
                std::array::from_fn(|i| &xs[(t0 + i).min(n - 1) * cols..][..cols]);
            let mut acc = [[_mm512_setzero_ps(); BT]; B];
            for i in (0..main).step_by(LANES) {
                // SAFETY: i + 16 <= main <= cols, the length of every row and input slice.
                let wv: [__m512; B] =
                    std::array::from_fn(|r| _mm512_loadu_ps(row[r].as_ptr().add(i)));
                for (t, x) in x.iter().enumerate() {
                    let xv = _mm512_loadu_ps(x.as_ptr().add(i));
                    for (acc, wv) in acc.iter_mut().zip(&wv) {
                        acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(*wv, xv));
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows - r0) {
                for (t, acc) in acc.iter().enumerate().take(n - t0) {
                    let lo = _mm512_castps512_ps256(*acc);
                    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*acc)));
                    ys[(t0 + t) * rows + r0 + r] =
                        finish_avx2(lo, hi, &x[t][main..], &row[r][main..]);
                }
            }
        }
    }
}

#[inline(always)]
fn matvec_lanes(
    w: &[f32],
    cols: usize,
    x: &[f32],
    y: &mut [f32],
    dot: impl Fn(&[f32], &[f32]) -> f32,
) {
    for (yi, row) in y.iter_mut().zip(w.chunks_exact(cols)) {
        *yi = dot(row, x);
    }
}

/// Softmax in place: max-subtracted, f64 sum, as ggml's soft_max.
pub(crate) fn softmax(x: &mut [f32], isa: Isa) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v -= max;
    }
    exp_in_place(x, isa);
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// x = e^x element-wise, each exactly `math::exp`.
pub(crate) fn exp_in_place(x: &mut [f32], isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa.float_avx2() {
        // SAFETY: the CPU has AVX2 (isa says so).
        return unsafe { exp_in_place_avx2(x) };
    }
    let _ = isa;
    for v in x {
        *v = crate::math::exp(*v);
    }
}

/// g = silu(g) * u = g / (1 + e^-g) * u element-wise (the SwiGLU gate), e^ as `math::exp`.
pub(crate) fn silu_mul(g: &mut [f32], u: &[f32], isa: Isa) {
    let mut e = [0f32; 64];
    for (g, u) in g.chunks_mut(64).zip(u.chunks(64)) {
        let e = &mut e[..g.len()];
        for (e, &g) in e.iter_mut().zip(g.iter()) {
            *e = -g;
        }
        exp_in_place(e, isa);
        for ((g, &u), &e) in g.iter_mut().zip(u).zip(e.iter()) {
            *g = *g / (1.0 + e) * u;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_in_place_avx2(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: c holds 4 floats.
        let v = _mm_loadu_ps(c.as_ptr());
        _mm_storeu_ps(c.as_mut_ptr(), exp4(v));
    }
    for v in chunks.into_remainder() {
        *v = crate::math::exp(*v);
    }
}

/// `math::exp` of 4 floats: the same f64 operations in the same order (x = k ln2 + r, the
/// degree-10 series of e^r, times 2^k), then the same special cases.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn exp4(x: std::arch::x86_64::__m128) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    const MAGIC: f64 = 6_755_399_441_055_744.0; // as math::round_even64
    let xd = _mm256_cvtps_pd(x);
    let t = _mm256_add_pd(
        _mm256_mul_pd(xd, _mm256_set1_pd(std::f64::consts::LOG2_E)),
        _mm256_set1_pd(MAGIC),
    );
    let k = _mm256_sub_pd(t, _mm256_set1_pd(MAGIC));
    let r = _mm256_sub_pd(xd, _mm256_mul_pd(k, _mm256_set1_pd(std::f64::consts::LN_2)));
    let mut p = _mm256_set1_pd(crate::math::INV_FACT[10]);
    for i in (0..10).rev() {
        p = _mm256_add_pd(
            _mm256_mul_pd(p, r),
            _mm256_set1_pd(crate::math::INV_FACT[i]),
        );
    }
    // t's low mantissa bits hold k (|k| < 2^51): 2^k's exponent field is k + 1023
    let e = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)),
        52,
    );
    let y = _mm256_cvtpd_ps(_mm256_mul_pd(p, _mm256_castsi256_pd(e)));
    let y = _mm_blendv_ps(
        y,
        _mm_set1_ps(f32::INFINITY),
        _mm_cmpgt_ps(x, _mm_set1_ps(88.8)),
    );
    let y = _mm_blendv_ps(y, _mm_setzero_ps(), _mm_cmplt_ps(x, _mm_set1_ps(-104.0)));
    _mm_blendv_ps(y, x, _mm_cmpunord_ps(x, x))
}

/// The attention heads that share one key/value head (grouped-query attention), over
/// n = att.len() / g positions: for head h, `att[h][t] = scale * cap(q_h . k_t)`, softmax over
/// t, then `out_h = sum of att[h][t] * v_t`, where cap(s) = c * tanh(s / c) with a soft-cap c
/// (Gemma 2; as ggml: s * (1 / c), tanh, times c) and s otherwise. `qs` and `outs` hold the g
/// heads of `hd` floats back to back; row t of `k` and `v` starts at t * stride, the shared
/// head's slice of it at `off` (`shape` = (hd, stride, off)). Each key and value row is read once
/// for all g heads; one call per group keeps the work in one vectorized function.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend<E: Elem>(
    qs: &[f32],
    k: &[E],
    v: &[E],
    shape: (usize, usize, usize),
    (scale, softcap): (f32, Option<f32>),
    att: &mut [f32],
    outs: &mut [f32],
    isa: Isa,
) {
    #[cfg(target_arch = "x86_64")]
    if isa.float_avx2() {
        // SAFETY: the CPU has AVX2 (isa says so).
        return unsafe { attend_avx2(qs, k, v, shape, (scale, softcap), att, outs, isa) };
    }
    attend_lanes(
        qs,
        k,
        v,
        shape,
        (scale, softcap),
        att,
        outs,
        (scores_lanes, weighted_sum_lanes, isa),
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2<E: Elem>(
    qs: &[f32],
    k: &[E],
    v: &[E],
    shape: (usize, usize, usize),
    scaling: (f32, Option<f32>),
    att: &mut [f32],
    outs: &mut [f32],
    isa: Isa,
) {
    // SAFETY: this function runs only where AVX2 is (its caller checked).
    let dots =
        |qs: &[f32], k: &[E], shape, att: &mut [f32]| unsafe { scores_avx2(qs, k, shape, att) };
    // SAFETY: as above.
    let sum = |att: &[f32], v: &[E], shape, outs: &mut [f32]| unsafe {
        weighted_sum_avx2(att, v, shape, outs)
    };
    attend_lanes(qs, k, v, shape, scaling, att, outs, (dots, sum, isa))
}

/// `scores_lanes` with AVX2: where the head size is a multiple of 16, eight keys at a time
/// (`dot8_avx2`), the rest one by one (`dot_avx2`); the same bits.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scores_avx2<E: Elem>(
    qs: &[f32],
    k: &[E],
    (hd, stride, off): (usize, usize, usize),
    att: &mut [f32],
) {
    use std::arch::x86_64::*;
    let n = att.len() / (qs.len() / hd);
    let mut t = 0;
    if hd % LANES == 0 {
        assert!(
            n == 0 || k.len() >= (n - 1) * stride + off + hd,
            "key rows out of range"
        );
        while t + 8 <= n {
            for (h, q) in qs.chunks_exact(hd).enumerate() {
                // SAFETY: rows t..t + 8 lie in k (asserted above), att[h n + t..][..8] in att
                // (t + 8 <= n).
                let kp = k.as_ptr().add(t * stride + off);
                let d = match hd {
                    64 => dot8_fixed::<E, 4>(q, kp, stride),
                    128 => dot8_fixed::<E, 8>(q, kp, stride),
                    _ => dot8_avx2(q, kp, stride),
                };
                _mm256_storeu_ps(att.as_mut_ptr().add(h * n + t), d);
            }
            t += 8;
        }
    }
    for t in t..n {
        let kr = &k[t * stride + off..][..hd];
        for (h, q) in qs.chunks_exact(hd).enumerate() {
            att[h * n + t] = dot_avx2(q, kr);
        }
    }
}

/// `dot8_avx2` for a head size of 16 C, known when compiled: q is loaded into registers once
/// for the 8 keys and the loops unroll. The same operations in the same order.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dot8_fixed<E: Elem, const C: usize>(q: &[f32], k: *const E, stride: usize) -> __m256 {
    use std::arch::x86_64::*;
    assert!(q.len() == 16 * C);
    // SAFETY: q holds 16 C floats (asserted); the caller passes 8 rows of 16 C elements.
    let qv: [[__m256; 2]; C] = std::array::from_fn(|i| {
        let p = q.as_ptr().add(16 * i);
        [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
    });
    let mut v = [_mm256_setzero_ps(); 8];
    for (j, v) in v.iter_mut().enumerate() {
        let kr = k.add(j * stride);
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (i, [q0, q1]) in qv.iter().enumerate() {
            lo = _mm256_add_ps(lo, _mm256_mul_ps(*q0, E::load8(kr.add(16 * i))));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(*q1, E::load8(kr.add(16 * i + 8))));
        }
        *v = _mm256_add_ps(lo, hi);
    }
    reduce_keys(v)
}

/// `dot_lanes(q, key j)` for the 8 keys at `k + j stride`, in one vector, for a head size that
/// is a multiple of 16: each key's 16 lane sums as `dot_avx2` forms them, then the pairwise
/// reduction run on the 8 keys side by side (each step adds the same two numbers).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dot8_avx2<E: Elem>(q: &[f32], k: *const E, stride: usize) -> __m256 {
    use std::arch::x86_64::*;
    debug_assert!(q.len().is_multiple_of(LANES));
    let mut v = [_mm256_setzero_ps(); 8];
    for (j, v) in v.iter_mut().enumerate() {
        // SAFETY: the caller passes 8 rows of q.len() elements, `stride` apart.
        let kr = k.add(j * stride);
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..q.len()).step_by(LANES) {
            let m0 = _mm256_mul_ps(_mm256_loadu_ps(q.as_ptr().add(i)), E::load8(kr.add(i)));
            let m1 = _mm256_mul_ps(
                _mm256_loadu_ps(q.as_ptr().add(i + 8)),
                E::load8(kr.add(i + 8)),
            );
            lo = _mm256_add_ps(lo, m0);
            hi = _mm256_add_ps(hi, m1);
        }
        // acc[l] += acc[l + 8]
        *v = _mm256_add_ps(lo, hi);
    }
    reduce_keys(v)
}

/// The pairwise reduction of `dot_lanes` (after acc[l] += acc[l + 8]) run on 8 keys' sums side
/// by side: key j's 8 lanes in v[j], its dot product in lane j of the result.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn reduce_keys(v: [__m256; 8]) -> __m256 {
    use std::arch::x86_64::*;
    // acc[l] += acc[l + 4]: keys 2p and 2p + 1 in the low and high 128-bit lanes of u[p]
    let fold4 = |a, b| {
        let lo = _mm256_permute2f128_ps::<0x20>(a, b);
        _mm256_add_ps(lo, _mm256_permute2f128_ps::<0x31>(a, b))
    };
    let u = [
        fold4(v[0], v[1]),
        fold4(v[2], v[3]),
        fold4(v[4], v[5]),
        fold4(v[6], v[7]),
    ];
    // acc[l] += acc[l + 2]: per 128-bit lane, two keys' (acc[0], acc[1])
    let fold2 = |a, b| {
        let lo = _mm256_shuffle_ps::<0b01_00_01_00>(a, b);
        _mm256_add_ps(lo, _mm256_shuffle_ps::<0b11_10_11_10>(a, b))
    };
    let z = [fold2(u[0], u[1]), fold2(u[2], u[3])];
    // acc[0] += acc[1]: keys 0, 2, 4, 6 in the low lane, 1, 3, 5, 7 in the high one
    let d = _mm256_add_ps(
        _mm256_shuffle_ps::<0b10_00_10_00>(z[0], z[1]),
        _mm256_shuffle_ps::<0b11_01_11_01>(z[0], z[1]),
    );
    _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// `weighted_sum_lanes` with each head's output kept in registers, 64 floats at a time, while
/// t runs: the same multiply and add per element in the same order. The rows go by in spans of
/// about 8 KiB, every head over a span before the next, so that the heads after the first read
/// the span from L1.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn weighted_sum_avx2<E: Elem>(
    att: &[f32],
    v: &[E],
    (hd, stride, off): (usize, usize, usize),
    outs: &mut [f32],
) {
    if hd % 8 != 0 {
        return weighted_sum_lanes(att, v, (hd, stride, off), outs);
    }
    let n = att.len() / (outs.len() / hd);
    assert!(
        n == 0 || v.len() >= (n - 1) * stride + off + hd,
        "value rows out of range"
    );
    let span = (8192 / (hd * std::mem::size_of::<E>())).max(8);
    for t0 in (0..n).step_by(span) {
        let t1 = (t0 + span).min(n);
        for (h, out) in outs.chunks_exact_mut(hd).enumerate() {
            let a = &att[h * n + t0..h * n + t1];
            for p0 in (0..hd).step_by(64) {
                // SAFETY: columns p0..p0 + 8w of out and of value rows t0..t1 lie in bounds
                // (asserted above; hd is a multiple of 8).
                let (o, vp) = (
                    out.as_mut_ptr().add(p0),
                    v.as_ptr().add(t0 * stride + off + p0),
                );
                match (hd - p0).min(64) / 8 {
                    8 => value_block::<E, 8>(a, vp, stride, o),
                    4 => value_block::<E, 4>(a, vp, stride, o),
                    w => {
                        for j in 0..w {
                            value_block::<E, 1>(a, vp.add(8 * j), stride, o.add(8 * j));
                        }
                    }
                }
            }
        }
    }
}

/// o[0..8W] += sum over t of a[t] * v[t stride..][0..8W], t in order, the 8W sums in registers
/// (W fixed, so the loop over them has no branches).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn value_block<E: Elem, const W: usize>(a: &[f32], v: *const E, stride: usize, o: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); W];
    for (j, acc) in acc.iter_mut().enumerate() {
        // SAFETY: the caller passes 8W floats at o and 8W elements at v + t stride for each t.
        *acc = _mm256_loadu_ps(o.add(8 * j));
    }
    for (t, &at) in a.iter().enumerate() {
        let s = _mm256_set1_ps(at);
        let vr = v.add(t * stride);
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(s, E::load8(vr.add(8 * j))));
        }
    }
    for (j, acc) in acc.iter().enumerate() {
        _mm256_storeu_ps(o.add(8 * j), *acc);
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_lanes<E: Elem>(
    qs: &[f32],
    k: &[E],
    v: &[E],
    (hd, stride, off): (usize, usize, usize),
    (scale, softcap): (f32, Option<f32>),
    att: &mut [f32],
    outs: &mut [f32],
    (scores, weighted_sum, isa): (
        impl Fn(&[f32], &[E], (usize, usize, usize), &mut [f32]),
        impl Fn(&[f32], &[E], (usize, usize, usize), &mut [f32]),
        Isa,
    ),
) {
    let g = qs.len() / hd;
    let n = att.len() / g;
    scores(qs, k, (hd, stride, off), att);
    for a in att.chunks_exact_mut(n) {
        for s in a.iter_mut() {
            let capped = softcap.map_or(*s, |c| c * crate::math::tanh(*s * (1.0 / c)));
            *s = capped * scale;
        }
        softmax(a, isa);
    }
    outs.fill(0.0);
    weighted_sum(att, v, (hd, stride, off), outs);
}

/// `att[h][t] = q_h . k_t` (`dot_lanes`) for the g heads of `qs` over n = att.len() / g keys,
/// every key row read once for all heads.
#[inline(always)]
fn scores_lanes<E: Elem>(
    qs: &[f32],
    k: &[E],
    (hd, stride, off): (usize, usize, usize),
    att: &mut [f32],
) {
    let n = att.len() / (qs.len() / hd);
    for t in 0..n {
        let kr = &k[t * stride + off..][..hd];
        for (h, q) in qs.chunks_exact(hd).enumerate() {
            att[h * n + t] = dot_lanes(q, kr);
        }
    }
}

/// `outs[h] = sum over t of att[h][t] * v_t`, t in order (each element one multiply and one
/// add per t), for the portable kernel: every value row read once for all heads.
#[inline(always)]
fn weighted_sum_lanes<E: Elem>(
    att: &[f32],
    v: &[E],
    (hd, stride, off): (usize, usize, usize),
    outs: &mut [f32],
) {
    let n = att.len() / (outs.len() / hd);
    for t in 0..n {
        let vr = &v[t * stride + off..][..hd];
        for (h, out) in outs.chunks_exact_mut(hd).enumerate() {
            axpy_lanes(att[h * n + t], vr, out);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Pseudo-random floats in [-0.5, 0.5): a linear congruential sequence from `seed`.
    #[cfg(target_arch = "x86_64")]
    fn uniform(mut state: u32) -> impl FnMut() -> f32 {
        move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1 << 24) as f32 - 0.5
        }
    }

    /// The vector exp equals math::exp bit for bit, at the edges of its range and between.
    #[test]
    fn exp_in_place_is_math_exp() {
        let mut x: Vec<f32> = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.8,
            88.81,
            88.79,
            -104.0,
            -104.01,
            -103.99,
            0.0,
            -0.0,
            1e-40,
            -1e-40,
            f32::MIN_POSITIVE,
        ];
        let mut state = 1u32;
        for _ in 0..20_000 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            x.push(f32::from_bits(state) % 120.0);
        }
        let want: Vec<u32> = x.iter().map(|&v| crate::math::exp(v).to_bits()).collect();
        for isa in crate::kernel::Isa::all() {
            let mut got = x.clone();
            super::exp_in_place(&mut got, isa);
            for ((w, g), v) in want.iter().zip(&got).zip(&x) {
                assert_eq!(*w, g.to_bits(), "exp({v}) on {}", isa.name());
            }
        }
    }

    /// The explicit AVX2 dot product gives `dot_lanes`'s bits, tails included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_dot_is_dot_lanes() {
        if crate::kernel::Isa::from_name("avx2").is_none() {
            return;
        }
        let mut next = uniform(7);
        for n in [0, 1, 7, 15, 16, 17, 31, 64, 100, 577] {
            for _ in 0..20 {
                let a: Vec<f32> = (0..n).map(|_| next() * 1e3).collect();
                let b: Vec<f32> = (0..n).map(|_| next()).collect();
                // SAFETY: AVX2 was detected above.
                let v = unsafe { super::dot_avx2(&a, &b) };
                assert_eq!(v.to_bits(), super::dot_lanes(&a, &b).to_bits(), "n={n}");
                // keys in f16, as a KV cache in f16 holds them
                let mut h = vec![0u16; n];
                super::to_f16(&b, &mut h);
                // SAFETY: as above.
                let v = unsafe { super::dot_avx2(&a, &h) };
                assert_eq!(v.to_bits(), super::dot_lanes(&a, &h).to_bits(), "f16 n={n}");
            }
        }
    }

    /// The AVX2 matrix-vector product (four rows at a time, with and without prefetch) gives
    /// `dot_lanes`'s bits for every row: row counts with and without a remainder of 4, column
    /// counts with and without a remainder of 16.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_matvec_is_dot_lanes() {
        if crate::kernel::Isa::from_name("avx2").is_none() {
            return;
        }
        let mut next = uniform(5);
        for (rows, cols) in [(1, 16), (3, 17), (4, 64), (9, 100), (13, 577), (8, 5)] {
            let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
            let x: Vec<f32> = (0..cols).map(|_| next() * 1e3).collect();
            let want: Vec<u32> = (0..rows)
                .map(|r| super::dot_lanes(&w[r * cols..][..cols], &x).to_bits())
                .collect();
            for prefetch in [0, 4096] {
                let mut y = vec![f32::NAN; rows];
                // SAFETY: AVX2 was detected above.
                unsafe { super::matvec_avx2(&w, cols, &x, &mut y, prefetch) };
                let got: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
                assert_eq!(want, got, "rows {rows} cols {cols}");
            }
        }
    }

    /// The batched product (4 x 6 blocks with AVX-512 where the CPU has it) gives `matvec`'s
    /// bits for every input: row and input counts with and without a remainder of 4, column
    /// counts with and without a remainder of 16.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn matmul_is_matvec() {
        let mut next = uniform(9);
        for (rows, cols, n) in [
            (1, 16, 2),
            (5, 17, 3),
            (8, 64, 4),
            (9, 100, 7),
            (13, 577, 5),
        ] {
            let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
            let xs: Vec<f32> = (0..n * cols).map(|_| next() * 1e3).collect();
            let mut want = vec![0f32; n * rows];
            for (x, y) in xs.chunks_exact(cols).zip(want.chunks_exact_mut(rows)) {
                super::matvec_lanes(&w, cols, x, y, super::dot_lanes::<f32>);
            }
            for isa in crate::kernel::Isa::all() {
                let mut got = vec![f32::NAN; n * rows];
                super::matmul(&w, cols, &xs, &mut got, 0, isa);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let at = format!("rows {rows} cols {cols} inputs {n} on {}", isa.name());
                assert_eq!(bits(&want), bits(&got), "{at}");
            }
        }
    }

    /// The AVX2 attention scores (eight keys at a time where the head size allows) give the
    /// portable ones' bits: head sizes that are and are not multiples of 16, key counts with and
    /// without a remainder of 8, keys in f32 and f16.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_scores_are_portable() {
        if crate::kernel::Isa::from_name("avx2").is_none() {
            return;
        }
        let mut next = uniform(11);
        for (hd, heads, n) in [
            (64, 3, 37),
            (128, 2, 16),
            (256, 1, 9),
            (72, 4, 11),
            (16, 2, 7),
        ] {
            let stride = hd * 3 + 8;
            let off = hd + 8;
            let k: Vec<f32> = (0..n * stride).map(|_| next()).collect();
            let qs: Vec<f32> = (0..heads * hd).map(|_| next() * 1e3).collect();
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let (mut want, mut got) = (vec![0f32; heads * n], vec![0f32; heads * n]);
            super::scores_lanes(&qs, &k, (hd, stride, off), &mut want);
            // SAFETY: AVX2 was detected above.
            unsafe { super::scores_avx2(&qs, &k, (hd, stride, off), &mut got) };
            assert_eq!(bits(&want), bits(&got), "hd {hd} n {n}");
            let mut h = vec![0u16; k.len()];
            super::to_f16(&k, &mut h);
            super::scores_lanes(&qs, &h, (hd, stride, off), &mut want);
            // SAFETY: as above.
            unsafe { super::scores_avx2(&qs, &h, (hd, stride, off), &mut got) };
            assert_eq!(bits(&want), bits(&got), "f16 hd {hd} n {n}");
        }
    }

    /// The AVX2 weighted sum of value rows gives the portable one's bits (head sizes of one,
    /// several and a partial 64-float block of 32 or 8 floats, and one not a multiple of 8).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_weighted_sum_is_portable() {
        if crate::kernel::Isa::from_name("avx2").is_none() {
            return;
        }
        let mut next = uniform(3);
        // n over several of weighted_sum_avx2's spans of rows, and one row past the last
        for (hd, heads, n) in [
            (64, 3, 37),
            (64, 3, 129),
            (256, 2, 5),
            (256, 2, 33),
            (96, 2, 13),
            (72, 4, 9),
            (12, 1, 3),
            (8, 2, 0),
        ] {
            let stride = hd * 3 + 8;
            let off = hd + 8;
            let v: Vec<f32> = (0..n * stride).map(|_| next()).collect();
            let att: Vec<f32> = (0..heads * n).map(|_| next()).collect();
            let mut want = vec![0f32; heads * hd];
            let mut got = vec![0f32; heads * hd];
            super::weighted_sum_lanes(&att, &v, (hd, stride, off), &mut want);
            // SAFETY: AVX2 was detected above.
            unsafe { super::weighted_sum_avx2(&att, &v, (hd, stride, off), &mut got) };
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&want), bits(&got), "hd {hd}");
            // values in f16
            let mut h = vec![0u16; v.len()];
            super::to_f16(&v, &mut h);
            let (mut want, mut got) = (vec![0f32; heads * hd], vec![0f32; heads * hd]);
            super::weighted_sum_lanes(&att, &h, (hd, stride, off), &mut want);
            // SAFETY: as above.
            unsafe { super::weighted_sum_avx2(&att, &h, (hd, stride, off), &mut got) };
            assert_eq!(bits(&want), bits(&got), "f16 hd {hd}");
        }
    }

    #[test]
    fn dot_matches_f64_reference() {
        for n in [0, 1, 15, 16, 17, 100, 577] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.5).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert_eq!(super::dot_lanes(&a, &b) as f64, exact, "n={n}");
        }
    }
}
