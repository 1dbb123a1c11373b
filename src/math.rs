//! Transcendental functions in portable Rust, so that a model gives bit-identical logits on
//! every CPU. The platform libm (`f32::exp`, `sin`, `powf`) may round differently on x86 and
//! ARM; these are evaluated in f64 with fixed operation order and rounded once to f32, which
//! also makes them as accurate as a correctly rounded libm in practice.

const LN2: f64 = std::f64::consts::LN_2;

/// 2^k for integer k in the normal f64 range.
fn exp2i(k: i64) -> f64 {
    f64::from_bits(((k.clamp(-1022, 1023) + 1023) as u64) << 52)
}

/// Round to the nearest integer, ties to even, for |x| < 2^51, without a libm call: adding
/// and subtracting 1.5 * 2^52 leaves exactly the rounded value in IEEE double arithmetic.
pub(crate) fn round_even64(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (x + MAGIC) - MAGIC
}

/// The same for f32 and |x| < 2^22.
pub(crate) fn round_even32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// 1/n! for n = 0..=14
pub(crate) const INV_FACT: [f64; 15] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
    1.0 / 87_178_291_200.0,
];

/// e^r for |r| <= ln2 / 2 by its Taylor series to degree n (Horner form).
fn exp_reduced(r: f64, n: usize) -> f64 {
    let mut p = INV_FACT[n];
    for i in (0..n).rev() {
        p = p * r + INV_FACT[i];
    }
    p
}

/// e^x in f64: x = k ln2 + r, |r| <= ln2/2, Taylor series of e^r to degree 14.
pub(crate) fn exp64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -708.0 {
        return 0.0; // below the normal range; subnormal results are not needed here
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let k = round_even64(x / LN2);
    exp_reduced(x - k * LN2, 14) * exp2i(k as i64)
}

/// e^x for f32 (the degree-10 series leaves an error near 1e-11, far below f32 rounding).
pub(crate) fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > 88.8 {
        return f32::INFINITY;
    }
    if x < -104.0 {
        return 0.0;
    }
    let x = x as f64;
    let k = round_even64(x * std::f64::consts::LOG2_E);
    (exp_reduced(x - k * LN2, 10) * exp2i(k as i64)) as f32
}

/// tanh for f32, through e^2x in f64 (series near 0, where e^2x - 1 would cancel).
pub(crate) fn tanh(x: f32) -> f32 {
    let x = x as f64;
    if x.abs() < 1e-4 {
        return (x - x * x * x / 3.0) as f32;
    }
    if x.abs() > 20.0 {
        return x.signum() as f32;
    }
    let t = exp64(2.0 * x);
    ((t - 1.0) / (t + 1.0)) as f32
}

/// GELU with the tanh approximation as ggml's CPU backend computes it: the input rounded to
/// f16 looks up a table of f16 results (built once), 0 below -10 and x above 10.
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    use half::f16;
    use std::sync::LazyLock;
    static TABLE: LazyLock<Vec<f16>> = LazyLock::new(|| {
        (0..=u16::MAX)
            .map(|h| {
                let x = f16::from_bits(h).to_f32();
                // ggml's ggml_gelu_f32, in its operation order
                #[allow(clippy::excessive_precision)]
                let inner =
                    0.797_884_560_802_865_355_879_892_119_868_76_f32 * x * (1.0 + 0.044715 * x * x);
                f16::from_f32(0.5 * x * (1.0 + tanh(inner)))
            })
            .collect()
    });
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        TABLE[f16::from_f32(x).to_bits() as usize].to_f32()
    }
}

/// Natural log in f64 for x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
/// ln m = 2 atanh((m-1)/(m+1)) summed as an odd series.
pub(crate) fn ln64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let bits = x.to_bits();
    let (mut m, mut e) = if (bits >> 52) & 0x7FF == 0 {
        // subnormal: scale into the normal range first
        let y = x * exp2i(60);
        let b = y.to_bits();
        (
            f64::from_bits((b & !(0x7FF << 52)) | (1023 << 52)),
            ((b >> 52) & 0x7FF) as i64 - 1023 - 60,
        )
    } else {
        (
            f64::from_bits((bits & !(0x7FF << 52)) | (1023 << 52)),
            ((bits >> 52) & 0x7FF) as i64 - 1023,
        )
    };
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for i in 0..20 {
        sum += term / (2 * i + 1) as f64;
        term *= s2;
    }
    2.0 * sum + e as f64 * LN2
}

/// base^e in f64 for base > 0.
pub(crate) fn pow64(base: f64, e: f64) -> f64 {
    exp64(e * ln64(base))
}

/// (sin x, cos x) for f32 x, computed in f64: reduce by pi/2, then Taylor series on
/// |r| <= pi/4.
pub(crate) fn sin_cos(x: f32) -> (f32, f32) {
    let x = x as f64;
    if !x.is_finite() {
        return (f32::NAN, f32::NAN);
    }
    // pi/2 = PIO2_HI + PIO2_LO; for the angles RoPE uses (|k| < 2^20) the reduction error
    // stays below 1e-9, far under f32 resolution
    const PIO2_HI: f64 = std::f64::consts::FRAC_PI_2;
    const PIO2_LO: f64 = 6.123_233_995_736_766e-17;
    let k = round_even64(x / std::f64::consts::FRAC_PI_2);
    let r = (x - k * PIO2_HI) - k * PIO2_LO;
    let r2 = r * r;
    // Horner over the odd (sin) and even (cos) Taylor terms, to degree 14
    let (mut s, mut c) = (0.0, 0.0);
    for i in (0..7).rev() {
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        s = s * r2 + sign * INV_FACT[2 * i + 1];
        c = c * r2 + sign * INV_FACT[2 * i];
    }
    let s = s * r;
    let (s, c) = match (k as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    };
    (s as f32, c as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_matches_libm_within_one_ulp() {
        let mut x = -100.0f32;
        while x < 88.0 {
            assert!(
                ulps(exp(x), x.exp()) <= 1,
                "exp({x}) = {} vs {}",
                exp(x),
                x.exp()
            );
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert!(exp(100.0).is_infinite());
    }

    #[test]
    fn ln_and_pow() {
        for &v in &[1e-300, 1e-5, 0.3, 1.0, 2.0, 10_000.0, 500_000.0, 1e300] {
            assert!(
                (ln64(v) - v.ln()).abs() <= 1e-15 * v.ln().abs().max(1.0),
                "ln {v}"
            );
        }
        let a = pow64(100_000.0, -2.0 / 64.0) as f32;
        assert!(ulps(a, 100_000f32.powf(-2.0 / 64.0)) <= 1);
    }

    #[test]
    fn sin_cos_match_libm() {
        let mut x = -9000.0f32;
        while x < 9000.0 {
            let (s, c) = sin_cos(x);
            assert!(
                (s - x.sin()).abs() <= 1e-6 && (c - x.cos()).abs() <= 1e-6,
                "{x}"
            );
            x += 1.37;
        }
    }
}
