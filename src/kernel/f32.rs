//! The f32 reference kernels. Sums run in a fixed order over 16 independent lanes, so the
//! compiler can vectorize them without reassociating, and the result is the same bit for bit
//! on every CPU. On x86-64 the same code is also compiled with AVX2 enabled (wider vectors, the
//! same operations in the same order, no fused multiply-adds) and used when the CPU has it.

const LANES: usize = 16;

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let mut acc = [0f32; LANES];
    let (a_main, a_tail) = a[..n].split_at(n - n % LANES);
    let (b_main, b_tail) = b[..n].split_at(n - n % LANES);
    for (x, y) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in a_tail.iter().zip(b_tail).enumerate() {
        acc[l] += x * y;
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

/// y += a * x (the attention's weighted sum of values).
#[inline(always)]
fn axpy_lanes(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// y = W x for a row-major (rows, cols) matrix W.
pub(crate) fn matvec(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { matvec_avx2(w, cols, x, y) };
    }
    matvec_lanes(w, cols, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn matvec_avx2(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    matvec_lanes(w, cols, x, y)
}

#[inline(always)]
fn matvec_lanes(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    for (yi, row) in y.iter_mut().zip(w.chunks_exact(cols)) {
        *yi = dot_lanes(row, x);
    }
}

/// Softmax in place: max-subtracted, f64 sum, as ggml's soft_max.
pub(crate) fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v -= max;
    }
    exp_in_place(x);
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// x = e^x element-wise, each exactly `math::exp`.
pub(crate) fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { exp_in_place_avx2(x) };
    }
    for v in x {
        *v = crate::math::exp(*v);
    }
}

/// g = silu(g) * u = g / (1 + e^-g) * u element-wise (the SwiGLU gate), e^ as `math::exp`.
pub(crate) fn silu_mul(g: &mut [f32], u: &[f32]) {
    let mut e = [0f32; 64];
    for (g, u) in g.chunks_mut(64).zip(u.chunks(64)) {
        let e = &mut e[..g.len()];
        for (e, &g) in e.iter_mut().zip(g.iter()) {
            *e = -g;
        }
        exp_in_place(e);
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
pub(crate) fn attend(
    qs: &[f32],
    k: &[f32],
    v: &[f32],
    shape: (usize, usize, usize),
    (scale, softcap): (f32, Option<f32>),
    att: &mut [f32],
    outs: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { attend_avx2(qs, k, v, shape, (scale, softcap), att, outs) };
    }
    attend_lanes(qs, k, v, shape, (scale, softcap), att, outs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn attend_avx2(
    qs: &[f32],
    k: &[f32],
    v: &[f32],
    shape: (usize, usize, usize),
    scaling: (f32, Option<f32>),
    att: &mut [f32],
    outs: &mut [f32],
) {
    attend_lanes(qs, k, v, shape, scaling, att, outs)
}

#[inline(always)]
fn attend_lanes(
    qs: &[f32],
    k: &[f32],
    v: &[f32],
    (hd, stride, off): (usize, usize, usize),
    (scale, softcap): (f32, Option<f32>),
    att: &mut [f32],
    outs: &mut [f32],
) {
    let g = qs.len() / hd;
    let n = att.len() / g;
    for t in 0..n {
        let kr = &k[t * stride + off..][..hd];
        for (h, q) in qs.chunks_exact(hd).enumerate() {
            let s = dot_lanes(q, kr);
            let s = softcap.map_or(s, |c| c * crate::math::tanh(s * (1.0 / c)));
            att[h * n + t] = s * scale;
        }
    }
    for a in att.chunks_exact_mut(n) {
        softmax(a);
    }
    outs.fill(0.0);
    for t in 0..n {
        let vr = &v[t * stride + off..][..hd];
        for (h, out) in outs.chunks_exact_mut(hd).enumerate() {
            axpy_lanes(att[h * n + t], vr, out);
        }
    }
}

#[cfg(test)]
mod tests {
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
        let mut got = x.clone();
        super::exp_in_place(&mut got);
        for ((w, g), v) in want.iter().zip(&got).zip(&x) {
            assert_eq!(*w, g.to_bits(), "exp({v})");
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
