//! Rounding a matrix to a grid of codes, either to nearest or against the inputs it will see:
//! GPTQ (Frantar et al., arXiv 2210.17323). GPTQ rounds the columns in order and takes each
//! column's rounding error, scaled by the inverse Hessian's Cholesky factor, off the columns
//! not yet rounded, so that the layer's outputs on its calibration inputs (H = sum of x x^T)
//! move as little as they can. Rows are independent (each row fits its own group parameters),
//! so the sweep runs row by row over one shared factor. GPTQ fits those parameters to the
//! weights before it rounds; afterwards tmac refits them to the codes it chose against H
//! itself (a least-squares problem per row), and sweeps again with them.

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

/// The GPTQ sweep of one matrix: the columns in `order`, the inverse factor `u` of the
/// inputs' Hessian permuted to that order (`inverse_factor(&permuted(h, order), ..)`), and
/// the damped Hessian itself (`damped`: n x n, both triangles, natural order), against which
/// the group parameters are refitted to the codes (`refit`).
pub(crate) struct Sweep<'a> {
    pub order: &'a [usize],
    pub u: &'a [f32],
    pub h: &'a [f64],
    /// Refits of the group parameters to a sweep's codes, each but the last followed by
    /// another sweep with the refitted parameters.
    pub refits: usize,
}

/// A matrix rounded to its grid: what the layout stores.
pub(crate) struct Rounded {
    /// rows x cols.
    pub codes: Vec<u8>,
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
/// groups"), so codes stay in contiguous groups as the layout stores them; then the sweep's
/// `refits` rounds of `refit` and another sweep (none after the last refit).
pub(crate) fn round_matrix(
    w: &[f32],
    (rows, cols, g): (usize, usize, usize),
    (grid, sup): (&Grid, Option<usize>),
    sweep: Option<&Sweep>,
    imp: &[f32],
) -> Rounded {
    let ng = (cols.div_ceil(8) * 8).div_ceil(g);
    let mut params: Vec<Params> = w
        .chunks_exact(cols)
        .flat_map(|row| {
            (0..ng).map(move |grp| {
                let span = (grp * g).min(cols)..((grp + 1) * g).min(cols);
                grid.fit(&row[span.clone()], &imp[span])
            })
        })
        .collect();
    let mut codes = vec![0u8; rows * cols];
    let mut stored = store(grid, (cols, g, sup), (w, imp), &mut params);
    let Some(sw) = sweep else {
        for (c, (q, &v)) in codes.iter_mut().zip(w).enumerate() {
            *q = grid.code(params[c / cols * ng + c % cols / g], v);
        }
        return Rounded {
            codes,
            heads: stored.0,
            subs: stored.1,
        };
    };
    let sums = group_sums(sw.h, cols, g, ng);
    let mut x = vec![0f32; cols];
    let mut sweep_rows = |params: &[Params], codes: &mut [u8]| {
        for ((row, out), p) in w
            .chunks_exact(cols)
            .zip(codes.chunks_exact_mut(cols))
            .zip(params.chunks_exact(ng))
        {
            gptq_row(grid, g, p, row, sw, &mut x, out);
        }
    };
    sweep_rows(&params, &mut codes);
    for round in 0..sw.refits {
        if !matches!(grid, Grid::Affine { .. }) {
            break;
        }
        for r0 in (0..rows).step_by(LANES) {
            let n = LANES.min(rows - r0);
            let span = r0 * cols..(r0 + n) * cols;
            let fits = refit(
                (&w[span.clone()], &codes[span]),
                (cols, g),
                (sw.h, &sums),
                &params[r0 * ng..(r0 + n) * ng],
            );
            for (p, fit) in params[r0 * ng..].chunks_exact_mut(ng).zip(fits) {
                if let Some(fit) = fit {
                    p.copy_from_slice(&fit);
                }
            }
        }
        stored = store(grid, (cols, g, sup), (w, imp), &mut params);
        if round + 1 < sw.refits {
            sweep_rows(&params, &mut codes);
        }
    }
    Rounded {
        codes,
        heads: stored.0,
        subs: stored.1,
    }
}

/// The heads and sub-scales of `Rounded`.
type Stored = (Vec<(f16, f16)>, Vec<(i8, u8)>);

/// The group parameters `p` of every row (`cols` columns each) as the layout stores them:
/// K-quant style with `sup` (`to_super`, which changes `p` to what is stored), else each
/// (d, m) in f16.
fn store(
    grid: &Grid,
    (cols, g, sup): (usize, usize, Option<usize>),
    (w, imp): (&[f32], &[f32]),
    p: &mut [Params],
) -> Stored {
    let (mut heads, mut subs) = (Vec::new(), Vec::new());
    let ng = p.len() / (w.len() / cols).max(1);
    for (row, p) in w.chunks_exact(cols).zip(p.chunks_exact_mut(ng.max(1))) {
        match sup {
            Some(n) => {
                for (s, p) in p.chunks_mut(n).enumerate() {
                    // every group starts inside the row (groups are multiples of 8 columns)
                    let span = (s * n * g).min(cols)..((s + 1) * n * g).min(cols);
                    let groups = row[span.clone()].chunks(g).zip(imp[span].chunks(g));
                    heads.push(to_super(grid, p, groups, &mut subs));
                }
            }
            None => {
                for p in p.iter_mut() {
                    let (d, m) = (h16(p.0), h16(p.1));
                    *p = (d.to_f32(), m.to_f32());
                    heads.push((d, m));
                }
            }
        }
    }
    (heads, subs)
}

/// GPTQ on one row: the columns rounded in the sweep's order with the static group parameters
/// `p`, each rounding error, scaled by the factor's diagonal, taken off the columns not yet
/// rounded. `x` is scratch of the row's length.
fn gptq_row(
    grid: &Grid,
    g: usize,
    p: &[Params],
    row: &[f32],
    sw: &Sweep,
    x: &mut [f32],
    out: &mut [u8],
) {
    let (cols, Sweep { order, u, .. }) = (row.len(), sw);
    for (xk, &c) in x.iter_mut().zip(*order) {
        *xk = row[c];
    }
    for (k, &c) in order.iter().enumerate() {
        let q = grid.code(p[c / g], x[k]);
        out[c] = q;
        let e = (x[k] - grid.value(p[c / g], q)) / u[k * cols + k];
        let (rest, ur) = (&mut x[k + 1..], &u[k * cols + k + 1..(k + 1) * cols]);
        for (v, &uv) in rest.iter_mut().zip(ur) {
            *v -= e * uv;
        }
    }
}

/// Per column c and group j of `g` columns: the sum of H[c][c'] over the group's columns c'
/// (n x ng, row-major), `h` n x n.
fn group_sums(h: &[f64], n: usize, g: usize, ng: usize) -> Vec<f64> {
    let mut s = vec![0f64; n * ng];
    for (hr, sr) in h.chunks_exact(n).zip(s.chunks_exact_mut(ng)) {
        for (v, hg) in sr.iter_mut().zip(hr.chunks(g)) {
            *v = hg.iter().sum();
        }
    }
    s
}

/// Rows refitted together: H is read once per block, the rows' sums side by side.
const LANES: usize = 8;

/// For fixed codes, the affine group parameters of up to `LANES` rows (`w` and `q`, `cols`
/// each) that minimize each row's output error e^T H e, e = w - (d q + m) per group, over all
/// its groups at once: GPTQ's static parameters were fitted to the weights alone, each group
/// by itself. The normal equations have two unknowns per group, with a pull of 1e-6 of their
/// mean diagonal towards the current parameters `p` (which settles a group whose codes are all
/// equal). None for a row whose system cannot be solved. `sums` = `group_sums(h)`.
fn refit(
    (w, q): (&[f32], &[u8]),
    (n, g): (usize, usize),
    (h, sums): (&[f64], &[f64]),
    p: &[Params],
) -> Vec<Option<Vec<Params>>> {
    let (rows, ng) = (w.len() / n, p.len() / (w.len() / n));
    // the block's codes and weights, column-major: [c][lane]
    let (mut qt, mut wt) = (vec![0f64; n * LANES], vec![0f64; n * LANES]);
    for r in 0..rows {
        for c in 0..n {
            qt[c * LANES + r] = q[r * n + c] as f64;
            wt[c * LANES + r] = w[r * n + c] as f64;
        }
    }
    // hq[c][j][lane] = sum over group j's columns c' of H[c][c'] q[c'], hw[c][lane] = (H w)[c]
    let (mut hq, mut hw) = (vec![0f64; n * ng * LANES], vec![0f64; n * LANES]);
    for (c, hr) in h.chunks_exact(n).enumerate() {
        let mut sw = [0f64; LANES];
        for (j, hg) in hr.chunks(g).enumerate() {
            let (mut sq, mut sx) = ([0f64; LANES], [0f64; LANES]);
            for (k, &hv) in hg.iter().enumerate() {
                let at = (j * g + k) * LANES;
                let (qk, wk) = (&qt[at..at + LANES], &wt[at..at + LANES]);
                for l in 0..LANES {
                    sq[l] += hv * qk[l];
                    sx[l] += hv * wk[l];
                }
            }
            hq[(c * ng + j) * LANES..(c * ng + j + 1) * LANES].copy_from_slice(&sq);
            for l in 0..LANES {
                sw[l] += sx[l];
            }
        }
        hw[c * LANES..(c + 1) * LANES].copy_from_slice(&sw);
    }
    (0..rows)
        .map(|r| {
            let hq = |c: usize, j: usize| hq[(c * ng + j) * LANES + r];
            solve_row(
                (&qt, &hw),
                r,
                (n, g, ng),
                (hq, sums),
                &p[r * ng..(r + 1) * ng],
            )
        })
        .collect()
}

/// One row's normal equations from its sums (`refit`), solved.
fn solve_row(
    (qt, hw): (&[f64], &[f64]),
    r: usize,
    (n, g, ng): (usize, usize, usize),
    (hq, sums): (impl Fn(usize, usize) -> f64, &[f64]),
    p: &[Params],
) -> Option<Vec<Params>> {
    // a theta = b, theta = (d0, m0, d1, m1, ..)
    let k = 2 * ng;
    let (mut a, mut b) = (vec![0f64; k * k], vec![0f64; k]);
    for c in 0..n {
        let (j, qc, hwc) = (c / g, qt[c * LANES + r], hw[c * LANES + r]);
        let sc = &sums[c * ng..(c + 1) * ng];
        for j2 in 0..ng {
            let hqc = hq(c, j2);
            a[2 * j * k + 2 * j2] += qc * hqc;
            a[2 * j * k + 2 * j2 + 1] += qc * sc[j2];
            a[(2 * j + 1) * k + 2 * j2] += hqc;
            a[(2 * j + 1) * k + 2 * j2 + 1] += sc[j2];
        }
        b[2 * j] += qc * hwc;
        b[2 * j + 1] += hwc;
    }
    let pull = 1e-6 * (0..k).map(|i| a[i * k + i]).sum::<f64>() / k as f64;
    for (i, &(d, m)) in p.iter().enumerate() {
        a[2 * i * k + 2 * i] += pull;
        a[(2 * i + 1) * k + 2 * i + 1] += pull;
        b[2 * i] += pull * d as f64;
        b[2 * i + 1] += pull * m as f64;
    }
    let l = cholesky(k, |i, j| a[i * k + j])?;
    let t = solve_cholesky(&l, k, &b);
    let fit: Vec<Params> = t
        .chunks_exact(2)
        .map(|v| (v[0] as f32, v[1] as f32))
        .collect();
    fit.iter()
        .all(|&(d, m)| d.is_finite() && m.is_finite())
        .then_some(fit)
}

/// x with L L^T x = b, L lower (row-major, n x n).
fn solve_cholesky(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0f64; n];
    for i in 0..n {
        y[i] = (b[i] - dot(&l[i * n..i * n + i], &y[..i])) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| l[j * n + i] * y[j]).sum();
        y[i] = (y[i] - s) / l[i * n + i];
    }
    y
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

/// The Hessian `h` (upper triangle read, n x n) damped as `inverse_factor` damps it, with
/// both triangles: what `refit` weighs the errors by.
pub(crate) fn damped(h: &[f64], n: usize, damp: f64) -> Vec<f64> {
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let damp = damp * if mean > 0.0 { mean } else { 1.0 };
    let mut d = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let v = match (i == j, h[i * n + i] == 0.0) {
                (true, true) => 1.0,
                (true, false) => h[i * n + i] + damp,
                _ => h[i * n + j],
            };
            (d[i * n + j], d[j * n + i]) = (v, v);
        }
    }
    d
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
        let (rows, cols, k) = (11, 48, 200);
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
        // flat groups: the heads are the parameters
        let err = |r: &Rounded| -> f64 {
            let (codes, params) = (&r.codes, &r.heads);
            let mut e = 0.0;
            for t in 0..k {
                for r in 0..rows {
                    let mut y = 0f64;
                    for c in 0..cols {
                        let (d, m) = params[r * 3 + c / 16];
                        let dq = grid.value((d.to_f32(), m.to_f32()), codes[r * cols + c]) as f64;
                        y += (w[r * cols + c] as f64 - dq) * x[t * cols + c];
                    }
                    e += y * y;
                }
            }
            e
        };
        let imp = vec![1f32; cols];
        let e0 = err(&round_matrix(
            &w,
            (rows, cols, 16),
            (&grid, None),
            None,
            &imp,
        ));
        let diag: Vec<f32> = (0..cols).map(|i| h[i * cols + i] as f32).collect();
        for order in [(0..cols).collect(), act_order(&diag)] {
            let u = inverse_factor(&permuted(&h, cols, &order), cols, 0.01);
            let hd = damped(&h, cols, 0.01);
            let round = |refits| {
                let sweep = Sweep {
                    order: &order,
                    u: &u,
                    h: &hd,
                    refits,
                };
                err(&round_matrix(
                    &w,
                    (rows, cols, 16),
                    (&grid, None),
                    Some(&sweep),
                    &imp,
                ))
            };
            let (e1, e2) = (round(0), round(1));
            assert!(e1 < 0.9 * e0, "gptq {e1} vs nearest {e0}");
            // the parameters refitted to GPTQ's codes against H
            assert!(e2 < 0.9 * e1, "refit {e2} vs gptq {e1}");
        }
    }
}
