//! The residual-stream rotation of a calibrated file (`convert::rotate`): Q = D B, D a
//! diagonal of random signs, B block-diagonal with Walsh-Hadamard blocks (`block`: 64 columns,
//! or the largest power of two that divides a narrower stream) scaled to be orthogonal. The weights hold it folded in; the forward pass applies Q^T to
//! each token's embedding and Q to the last hidden state. One scalar version: additions,
//! subtractions and a power-of-two scale, so the same bits on every CPU (and a few thousand
//! operations per token, nothing to vectorize for).

/// Width of the Hadamard blocks of a stream of width n: the largest power of two dividing n,
/// at most 64; None below 16 (too narrow to spread anything).
pub(crate) fn block(n: usize) -> Option<usize> {
    let b = (1usize << n.trailing_zeros().min(6)).min(n.max(1));
    (b >= 16).then_some(b)
}

/// x <- Q^T x = B D x.
pub(crate) fn rotate(x: &mut [f32], signs: &[f32]) {
    for (v, &s) in x.iter_mut().zip(signs) {
        *v *= s;
    }
    hadamard_blocks(x);
}

/// x <- Q x = D B x (B is symmetric).
pub(crate) fn unrotate(x: &mut [f32], signs: &[f32]) {
    hadamard_blocks(x);
    for (v, &s) in x.iter_mut().zip(signs) {
        *v *= s;
    }
}

/// The fast Walsh-Hadamard transform of each block, times 1/sqrt(block), a power of two
/// (exact) for a block of 16 or 64, 1/sqrt(32) rounded for 32.
fn hadamard_blocks(x: &mut [f32]) {
    let Some(n) = block(x.len()) else { return };
    let scale = 1.0 / (n as f32).sqrt();
    for blk in x.chunks_exact_mut(n) {
        let mut h = 1;
        while h < n {
            for pair in blk.chunks_exact_mut(2 * h) {
                let (a, b) = pair.split_at_mut(h);
                for (u, v) in a.iter_mut().zip(b) {
                    (*u, *v) = (*u + *v, *u - *v);
                }
            }
            h *= 2;
        }
        for v in blk.iter_mut() {
            *v *= scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q is orthogonal: unrotate undoes rotate (exactly on small integers), and norms and dot
    /// products are kept; each block is the Sylvester Hadamard matrix.
    #[test]
    fn rotation_is_orthogonal_hadamard() {
        let n = 128;
        let signs: Vec<f32> = (0..n)
            .map(|i| if (i * 7) % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let mut y = x.clone();
        rotate(&mut y, &signs);
        let norm = |v: &[f32]| v.iter().map(|a| (a * a) as f64).sum::<f64>();
        assert!((norm(&x) - norm(&y)).abs() < 1e-3 * norm(&x));
        unrotate(&mut y, &signs);
        assert_eq!(x, y);
        // column j of the first block: H[i][j] = (-1)^popcount(i & j) / 8
        assert_eq!(
            (block(576), block(32), block(8), block(200)),
            (Some(64), Some(32), None, None)
        );
        for j in 0..64 {
            let mut e = vec![0f32; 64];
            e[j] = 1.0;
            hadamard_blocks(&mut e);
            for (i, &v) in e.iter().enumerate() {
                let want = if (i & j).count_ones() % 2 == 0 {
                    0.125
                } else {
                    -0.125
                };
                assert_eq!(v, want);
            }
        }
    }
}
