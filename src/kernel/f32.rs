//! The f32 reference kernels. Sums run in a fixed order over 16 independent lanes, so the
//! compiler can vectorize them without reassociating, and the result is the same bit for bit
//! on every CPU.

const LANES: usize = 16;

/// Dot product of equal-length slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// y = W x for a row-major (rows, cols) matrix W.
pub fn matvec(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    for (yi, row) in y.iter_mut().zip(w.chunks_exact(cols)) {
        *yi = dot(row, x);
    }
}

/// y += a * x
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dot_matches_f64_reference() {
        for n in [0, 1, 15, 16, 17, 100, 577] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.5).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert_eq!(super::dot(&a, &b) as f64, exact, "n={n}");
        }
    }
}
