//! Rounding a matrix to a grid of codes, either to nearest or against the inputs it will see:
//! GPTQ (Frantar et al., arXiv 2210.17323). GPTQ rounds the columns in order and takes each
//! column's rounding error, scaled by the inverse Hessian's Cholesky factor, off the columns
//! not yet rounded, so that the layer's outputs on its calibration inputs (H = sum of x x^T)
//! move as little as they can. Rows are independent (each row fits its own group parameters),
//! so the sweep runs row by row over one shared factor.

use half::f16;

/// How codes map to weights within one scale group.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Grid {
    /// w = d * q + m, q in 0..=levels, (d, m) fitted per group.
    Affine { levels: u32 },
    /// w = s * (q - 1), q in 0..=2, s the group's absmean, or one scale for the whole tensor.
    Ternary { tensor: Option<f16> },
}

/// A group's parameters as the kernels apply them: (d, m) for affine, (s, 0) for ternary;
/// f16 values, or with sub-scales a super-block's f16 (d, m) times the group's integers.
pub(crate) type Params = (f32, f32);

impl Grid {
    /// The parameters of one group of a row, `x` its weights and `imp` how much the error of
    /// each weight costs (the Hessian's diagonal, or 1).
    fn fit(&self, x: &[f32], imp: &[f32]) -> Params {
        match *self {
            Grid::Affine { levels } => fit_affine(x, imp, levels),
            Grid::Ternary { tensor: Some(s) } => (s.to_f32(), 0.0),
            Grid::Ternary { tensor: None } => (absmean(x.iter().copied()).to_f32(), 0.0),
        }
    }

    #[inline]
    fn code(&self, (d, m): Params, x: f32) -> u8 {
        match *self {
            Grid::Affine { .. } if d == 0.0 => 0,
            Grid::Affine { levels } => ((x - m) / d).round().clamp(0.0, levels as f32) as u8,
            Grid::Ternary { .. } => ((x / d).round().clamp(-1.0, 1.0) + 1.0) as u8,
        }
    }

    #[inline]
    fn value(&self, (d, m): Params, q: u8) -> f32 {
        match *self {
            Grid::Affine { .. } => d * q as f32 + m,
            Grid::Ternary { .. } => d * (q as f32 - 1.0),
        }
    }
}

/// BitNet's absmean scale (plus 1e-6, so an all-zero group still divides).
pub(crate) fn absmean(vals: impl Iterator<Item = f32>) -> f16 {
    let (s, n) = vals.fold((0f64, 0usize), |(s, n), v| (s + v.abs() as f64, n + 1));
    f16::from_f32((s / n.max(1) as f64) as f32 + 1e-6)
}

/// x > 0, false for NaN.
fn positive(x: f64) -> bool {
    x > 0.0
}

/// Weighted squared error of a group rounded with `p` as stored.
fn group_error(grid: &Grid, p: Params, x: &[f32], imp: &[f32]) -> f64 {
    let e = x.iter().zip(imp).map(|(&v, &w)| {
        let r = v - grid.value(p, grid.code(p, v));
        w as f64 * (r * r) as f64
    });
    e.sum()
}

/// (d, m) for w = d * q + m: the min-max grid, and grids stretched by -1 to +1 levels over the
/// group's range, each refit by weighted least squares on its codes (llama.cpp's
/// make_qkx2_quants search); the smallest weighted error after rounding to f16 wins, so the
/// result is never worse than min-max.
fn fit_affine(x: &[f32], imp: &[f32], levels: u32) -> Params {
    let h = |v: f32| f16::from_f32(v).to_f32();
    let grid = Grid::Affine { levels };
    let levels = levels as f32;
    let (lo, hi) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !positive((hi - lo) as f64) {
        let m = if lo.is_finite() { lo } else { 0.0 };
        return (0.0, h(m));
    }
    let mut best = (h((hi - lo) / levels), h(lo));
    let mut best_err = group_error(&grid, best, x, imp);
    // weights already on a grid (a Q4_1 file's, to q4) need no search
    if best_err == 0.0 {
        return best;
    }
    for step in 0..=20 {
        let iscale = (levels - 1.0 + 0.1 * step as f32) / (hi - lo);
        let codes = x
            .iter()
            .map(|&v| ((v - lo) * iscale).round().clamp(0.0, levels));
        let Some((d, m)) = least_squares(codes, x, imp) else {
            continue;
        };
        // once more on the codes of the refit grid
        let p = (h(d), h(m));
        let codes = x.iter().map(|&v| grid.code(p, v) as f32);
        let p = least_squares(codes, x, imp).map_or(p, |(d, m)| (h(d), h(m)));
        if !positive(p.0 as f64) {
            continue;
        }
        let e = group_error(&grid, p, x, imp);
        if e < best_err {
            (best, best_err) = (p, e);
        }
    }
    best
}

/// (d, m) minimizing sum imp * (x - d q - m)^2 for codes q, if the system is not singular.
fn least_squares(codes: impl Iterator<Item = f32>, x: &[f32], imp: &[f32]) -> Option<(f32, f32)> {
    let (mut sw, mut sq, mut sqq, mut sx, mut sxq) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for ((q, &v), &w) in codes.zip(x).zip(imp) {
        let (q, v, w) = (q as f64, v as f64, w as f64);
        sw += w;
        sq += w * q;
        sqq += w * q * q;
        sx += w * v;
        sxq += w * v * q;
    }
    let det = sw * sqq - sq * sq;
    if !positive(det - 1e-12 * sw * sqq) {
        return None;
    }
    let d = (sw * sxq - sx * sq) / det;
    let m = (sqq * sx - sq * sxq) / det;
    (d.is_finite() && m.is_finite() && d > 0.0).then_some((d as f32, m as f32))
}

/// The GPTQ sweep of one matrix: the columns in `order` and the inverse factor `u` of the
/// inputs' Hessian permuted to that order (`inverse_factor(&permuted(h, order), ..)`).
pub(crate) struct Sweep<'a> {
    pub order: &'a [usize],
    pub u: &'a [f32],
}

/// A matrix rounded to its grid: what the layout stores.
pub(crate) struct Rounded {
    /// rows x cols.
    pub codes: Vec<u8>,
    /// Per (row, group): the parameters as the kernels apply them.
    pub params: Vec<Params>,
    /// Per (row, super-block): f16 (d, m); without sub-scales a super-block is one group.
    pub heads: Vec<(f16, f16)>,
    /// Per (row, group), with sub-scales only: the integers (sc, mn).
    pub subs: Vec<(i8, u8)>,
}

/// Codes and group parameters of a row-major (rows, cols) matrix, `g` columns per group, the
/// parameters fitted to the row's weights with `imp` weighing each column's error, and with
/// `sup` = Some(n) stored K-quant style (`to_super`). Without a sweep each weight is rounded
/// to nearest; with one, GPTQ rounds the columns in the sweep's order (largest Hessian
/// diagonal first, GPTQ's "act order", keeps the most important columns away from
/// accumulated corrections) and the groups keep the parameters fitted up front ("static
/// groups"), so codes stay in contiguous groups as the layout stores them.
pub(crate) fn round_matrix(
    w: &[f32],
    (rows, cols, g): (usize, usize, usize),
    (grid, sup): (&Grid, Option<usize>),
    sweep: Option<&Sweep>,
    imp: &[f32],
) -> Rounded {
    let ng = (cols.div_ceil(8) * 8).div_ceil(g);
    let mut r = Rounded {
        codes: vec![0u8; rows * cols],
        params: Vec::with_capacity(rows * ng),
        heads: Vec::with_capacity(rows * ng.div_ceil(sup.unwrap_or(1))),
        subs: Vec::with_capacity(if sup.is_some() { rows * ng } else { 0 }),
    };
    let mut x = vec![0f32; cols];
    for (row, out) in w.chunks_exact(cols).zip(r.codes.chunks_exact_mut(cols)) {
        let first = r.params.len();
        for grp in 0..ng {
            let span = (grp * g).min(cols)..((grp + 1) * g).min(cols);
            r.params.push(grid.fit(&row[span.clone()], &imp[span]));
        }
        let p = &mut r.params[first..];
        match sup {
            Some(n) => {
                for (s, p) in p.chunks_mut(n).enumerate() {
                    // every group starts inside the row (groups are multiples of 8 columns)
                    let span = (s * n * g).min(cols)..((s + 1) * n * g).min(cols);
                    let groups = row[span.clone()].chunks(g).zip(imp[span].chunks(g));
                    r.heads.push(to_super(grid, p, groups, &mut r.subs));
                }
            }
            None => r.heads.extend(p.iter().map(|&(d, m)| (h16(d), h16(m)))),
        }
        let p = &r.params[first..];
        let Some(Sweep { order, u }) = sweep else {
            for (c, (q, &v)) in out.iter_mut().zip(row).enumerate() {
                *q = grid.code(p[c / g], v);
            }
            continue;
        };
        for (xk, &c) in x.iter_mut().zip(*order) {
            *xk = row[c];
        }
        for (k, &c) in order.iter().enumerate() {
            let q = grid.code(p[c / g], x[k]);
            out[c] = q;
            // the error, scaled by the factor's diagonal, off the columns not yet rounded
            let e = (x[k] - grid.value(p[c / g], q)) / u[k * cols + k];
            let (rest, ur) = (&mut x[k + 1..], &u[k * cols + k + 1..(k + 1) * cols]);
            for (v, &uv) in rest.iter_mut().zip(ur) {
                *v -= e * uv;
            }
        }
    }
    r
}

fn h16(v: f32) -> f16 {
    f16::from_f32(v)
}

/// One super-block's affine group parameters `p` stored as ggml's K-quants store them:
/// d = (largest scale) / 127 and m = (minimum of largest magnitude) / 255 in f16, then per
/// group the integers sc in 0..=127 and mn in 0..=255 (each rounded down or up, whichever
/// pair gives the group's weights, `groups`, the smaller weighted error), pushed to `subs`;
/// `p` becomes d * sc, m * mn. Returns (d, m).
fn to_super<'a>(
    grid: &Grid,
    p: &mut [Params],
    groups: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    subs: &mut Vec<(i8, u8)>,
) -> (f16, f16) {
    let dmax = p.iter().fold(0f32, |a, &(d, _)| a.max(d));
    let (lo, hi) = p
        .iter()
        .fold((0f32, 0f32), |(a, b), &(_, m)| (a.min(m), b.max(m)));
    let (d, m) = (
        h16(dmax / 127.0),
        h16(if -lo >= hi { lo } else { hi } / 255.0),
    );
    let (df, mf) = (d.to_f32(), m.to_f32());
    // the integers around v / unit, within 0..=top (0 for a zero unit)
    let near = |v: f32, unit: f32, top: f32| -> [f32; 2] {
        if unit == 0.0 {
            return [0.0; 2];
        }
        let t = (v / unit).clamp(0.0, top);
        [t.floor(), t.ceil()]
    };
    for (pg, (x, imp)) in p.iter_mut().zip(groups) {
        let mut best = (f64::INFINITY, 0.0, 0.0);
        for sc in near(pg.0, df, 127.0) {
            for mn in near(pg.1, mf, 255.0) {
                let e = group_error(grid, (df * sc, mf * mn), x, imp);
                if e < best.0 {
                    best = (e, sc, mn);
                }
            }
        }
        let (_, sc, mn) = best;
        *pg = (df * sc, mf * mn);
        subs.push((sc as i8, mn as u8));
    }
    (d, m)
}

/// Columns by decreasing Hessian diagonal (ties by index): GPTQ's act order.
pub(crate) fn act_order(diag: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..diag.len()).collect();
    order.sort_by(|&a, &b| diag[b].total_cmp(&diag[a]).then(a.cmp(&b)));
    order
}

/// The n x n matrix with its upper triangle read from `h` (row-major), rows and columns
/// taken in `order`.
pub(crate) fn permuted(h: &[f64], n: usize, order: &[usize]) -> Vec<f64> {
    let mut p = vec![0f64; n * n];
    for (i, &a) in order.iter().enumerate() {
        for (j, &b) in order.iter().enumerate() {
            p[i * n + j] = h[a.min(b) * n + a.max(b)];
        }
    }
    p
}

/// The upper-triangular U with H^-1 = U^T U (row-major, n x n) for a Hessian `h` of which
/// the upper triangle is read (n x n, row-major), after GPTQ's damping: `damp` times the mean
/// diagonal added to the diagonal, 1 on the diagonal of inputs that were always 0. U is the
/// reversal of the inverse Cholesky factor of the reversed H (H reversed = L L^T gives
/// H^-1 = (P L^-1 P)^T (P L^-1 P), P the reversal), one factorization and one triangular
/// inverse. A matrix that is still not positive definite is damped ten times more.
pub(crate) fn inverse_factor(h: &[f64], n: usize, damp: f64) -> Vec<f32> {
    let diag = |i: usize| h[i * n + i];
    let mean = (0..n).map(diag).sum::<f64>() / n.max(1) as f64;
    let mut damp = damp * if mean > 0.0 { mean } else { 1.0 };
    loop {
        // a[i][j] (j <= i) of the reversed, damped H
        let at = |i: usize, j: usize| {
            let (r, c) = (n - 1 - i, n - 1 - j); // r <= c: the upper triangle of H
            let v = h[r * n + c];
            match (i == j, diag(r) == 0.0) {
                (true, true) => 1.0,
                (true, false) => v + damp,
                _ => v,
            }
        };
        if let Some(l) = cholesky(n, at) {
            let x = invert_lower(&l, n);
            let mut u = vec![0f32; n * n];
            for i in 0..n {
                for j in i..n {
                    u[i * n + j] = x[(n - 1 - i) * n + (n - 1 - j)] as f32;
                }
            }
            return u;
        }
        damp *= 10.0;
    }
}

/// Lower L with A = L L^T (row-major), A given by its lower triangle; None if A is not
/// positive definite.
fn cholesky(n: usize, a: impl Fn(usize, usize) -> f64) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a(i, j) - dot(&l[i * n..i * n + j], &l[j * n..j * n + j]);
            if i == j {
                if !positive(s) {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// L^-1 for a lower-triangular L, row by row: row i = -(sum over k < i of L[i][k] row k) / L[i][i].
fn invert_lower(l: &[f64], n: usize) -> Vec<f64> {
    let mut x = vec![0f64; n * n];
    let mut acc = vec![0f64; n];
    for i in 0..n {
        acc[..i].fill(0.0);
        for k in 0..i {
            let a = l[i * n + k];
            for (s, &v) in acc[..=k].iter_mut().zip(&x[k * n..k * n + k + 1]) {
                *s += a * v;
            }
        }
        let inv = 1.0 / l[i * n + i];
        for j in 0..i {
            x[i * n + j] = -acc[j] * inv;
        }
        x[i * n + i] = inv;
    }
    x
}

/// Dot product in four lanes (a fixed order, so the same bits on every machine).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// U^T U is the inverse of the damped H: (U^T U) H = I.
    #[test]
    fn inverse_factor_inverts_the_damped_hessian() {
        let mut seed = 7u64;
        for n in [1, 2, 5, 17, 40] {
            let k = n + 3;
            let x: Vec<f64> = (0..k * n).map(|_| rng(&mut seed)).collect();
            let mut h = vec![0f64; n * n];
            for t in 0..k {
                for i in 0..n {
                    for j in 0..n {
                        h[i * n + j] += x[t * n + i] * x[t * n + j];
                    }
                }
            }
            // one dead input
            if n > 2 {
                for j in 0..n {
                    h[n + j] = 0.0;
                    h[j * n + 1] = 0.0;
                }
            }
            let u = inverse_factor(&h, n, 0.01);
            let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
            let damped = |i: usize, j: usize| match (i == j, h[i * n + i] == 0.0) {
                (true, true) => 1.0,
                (true, false) => h[i * n + j] + 0.01 * mean,
                _ => h[i * n + j],
            };
            for i in 0..n {
                for j in 0..n {
                    assert!(u[i * n + j] == 0.0 || j >= i, "U is upper");
                    // ((U^T U) H)[i][j]
                    let v: f64 = (0..n)
                        .map(|k| {
                            let utu: f64 = (0..n)
                                .map(|m| u[m * n + i] as f64 * u[m * n + k] as f64)
                                .sum();
                            utu * damped(k, j)
                        })
                        .sum();
                    let want = (i == j) as u8 as f64;
                    assert!((v - want).abs() < 1e-3, "n {n} ({i},{j}): {v}");
                }
            }
        }
    }

    /// The fitted grid is never worse than min-max, and better on a group with an outlier.
    #[test]
    fn affine_fit_beats_min_max() {
        let mut seed = 3u64;
        let grid = Grid::Affine { levels: 3 };
        let mut gain = 0.0;
        for _ in 0..200 {
            let mut x: Vec<f32> = (0..32).map(|_| rng(&mut seed) as f32).collect();
            x[5] *= 6.0;
            let imp = vec![1f32; 32];
            let (lo, hi) = (
                x.iter().copied().fold(f32::MAX, f32::min),
                x.iter().copied().fold(f32::MIN, f32::max),
            );
            let h = |v: f32| f16::from_f32(v).to_f32();
            let mm = (h((hi - lo) / 3.0), h(lo));
            let (a, b) = (
                group_error(&grid, mm, &x, &imp),
                group_error(&grid, grid.fit(&x, &imp), &x, &imp),
            );
            assert!(b <= a);
            gain += a - b;
        }
        assert!(gain > 0.0);
    }

    /// With a Hessian, GPTQ's output error on the inputs it saw is below rounding to nearest.
    #[test]
    fn gptq_lowers_the_output_error() {
        let mut seed = 11u64;
        let (rows, cols, k) = (8, 48, 200);
        // correlated inputs: a shared component
        let x: Vec<f64> = (0..k)
            .flat_map(|_| {
                let s = rng(&mut seed);
                (0..cols)
                    .map(|_| s + 0.3 * rng(&mut seed))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut h = vec![0f64; cols * cols];
        for t in 0..k {
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += x[t * cols + i] * x[t * cols + j];
                }
            }
        }
        let w: Vec<f32> = (0..rows * cols).map(|_| rng(&mut seed) as f32).collect();
        let grid = Grid::Affine { levels: 3 };
        let err = |codes: &[u8], params: &[Params]| -> f64 {
            let mut e = 0.0;
            for t in 0..k {
                for r in 0..rows {
                    let mut y = 0f64;
                    for c in 0..cols {
                        let p = params[r * 3 + c / 16];
                        let dq = grid.value(p, codes[r * cols + c]) as f64;
                        y += (w[r * cols + c] as f64 - dq) * x[t * cols + c];
                    }
                    e += y * y;
                }
            }
            e
        };
        let imp = vec![1f32; cols];
        let r0 = round_matrix(&w, (rows, cols, 16), (&grid, None), None, &imp);
        let (c0, p0) = (r0.codes, r0.params);
        let diag: Vec<f32> = (0..cols).map(|i| h[i * cols + i] as f32).collect();
        for order in [(0..cols).collect(), act_order(&diag)] {
            let u = inverse_factor(&permuted(&h, cols, &order), cols, 0.01);
            let sweep = Sweep {
                order: &order,
                u: &u,
            };
            let r1 = round_matrix(&w, (rows, cols, 16), (&grid, None), Some(&sweep), &imp);
            let (c1, p1) = (r1.codes, r1.params);
            assert_eq!(p0, p1, "static groups");
            let (e0, e1) = (err(&c0, &p0), err(&c1, &p1));
            assert!(e1 < 0.85 * e0, "gptq {e1} vs nearest {e0}");
        }
    }
}
