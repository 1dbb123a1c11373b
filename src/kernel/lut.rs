//! The input side of the T-MAC kernels: an activation vector quantized to int8, and the lookup
//! tables built from it once and shared by every matrix that reads it.
//!
//! Quantization: per activation group (the whole vector by default), absmax to 127,
//! round-half-even, clamp to [-128, 127], as BitNet's W1.58A8 defines it. The group's dequant
//! factor is amax / 127.
//!
//! Tables: for every group of 4 activations t (a 4-bit "bit-plane" index i selects which of the
//! four are summed), T_t[i] = sum of a[4t + l] over the set bits l of i. Entries lie in
//! [-512, 508], so they are exact in int16; each table is stored as its 16 low bytes then its 16
//! high bytes: 32 bytes per table, so the tables of a 2560-wide input (20 KiB) stay in L1.

/// Bytes per table: lo[16] hi[16].
pub const TABLE_BYTES: usize = 32;

/// A quantized input vector.
pub struct Activations {
    /// Length of the input (before padding).
    pub k: usize,
    /// Padded to a multiple of 8 with zeros.
    pub a: Vec<i8>,
    /// Activations per scale group (a multiple of 8, or >= k for one scale).
    pub group: usize,
    /// Dequant factor of each group.
    pub scales: Vec<f32>,
    /// Prefix sums of `a` at every multiple of 8: sums8[c] = a[0] + ... + a[8c - 1].
    pub sums8: Vec<i32>,
    /// K/4 tables, built by `build_tables`.
    pub tables: Vec<u8>,
    tables_built: bool,
}

impl Activations {
    pub fn new() -> Activations {
        Activations {
            k: 0,
            a: Vec::new(),
            group: 0,
            scales: Vec::new(),
            sums8: Vec::new(),
            tables: Vec::new(),
            tables_built: false,
        }
    }

    /// Quantize `x` with one scale per `group` activations (`group` >= x.len() for one scale).
    pub fn quantize(&mut self, x: &[f32], group: usize) {
        let k = x.len();
        let kp = k.div_ceil(8) * 8;
        let group = if group >= k { kp.max(8) } else { group };
        debug_assert!(group % 8 == 0);
        self.k = k;
        self.group = group;
        self.a.clear();
        self.a.resize(kp, 0);
        self.scales.clear();
        for (xs, qs) in x.chunks(group).zip(self.a.chunks_mut(group)) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            // a NaN input stays visible: the scale becomes NaN, so does the output
            let s = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = crate::math::round_even32(v * s).clamp(-128.0, 127.0) as i8;
            }
            self.scales.push(if amax.is_nan() {
                f32::NAN
            } else {
                amax / 127.0
            });
        }
        self.sums8.clear();
        self.sums8.push(0);
        let mut total = 0i32;
        for c in self.a.chunks_exact(8) {
            total += c.iter().map(|&v| v as i32).sum::<i32>();
            self.sums8.push(total);
        }
        self.tables_built = false;
    }

    /// Sum of a[start..start + len] (start and len multiples of 8).
    pub fn sum(&self, start: usize, len: usize) -> i32 {
        let end = (start + len).min(self.a.len());
        self.sums8[end / 8] - self.sums8[start / 8]
    }

    /// Dequant factor of the activation at index k.
    pub fn scale_at(&self, k: usize) -> f32 {
        self.scales[k / self.group]
    }

    /// Build the lookup tables (once per input; later calls are free).
    pub fn build_tables(&mut self) {
        if self.tables_built {
            return;
        }
        let nt = self.a.len() / 4;
        self.tables.clear();
        self.tables.resize(nt * TABLE_BYTES, 0);
        for (t, out) in self.tables.chunks_exact_mut(TABLE_BYTES).enumerate() {
            let a = &self.a[4 * t..4 * t + 4];
            let mut e = [0i16; 16];
            for i in 1..16usize {
                // entry i = entry (i without its lowest set bit) + that bit's activation
                let low = i.trailing_zeros() as usize;
                e[i] = e[i & (i - 1)] + a[low] as i16;
            }
            for i in 0..16 {
                let [lo, hi] = e[i].to_le_bytes();
                out[i] = lo;
                out[16 + i] = hi;
            }
        }
        self.tables_built = true;
    }

    pub fn tables_ready(&self) -> bool {
        self.tables_built
    }
}

impl Default for Activations {
    fn default() -> Self {
        Activations::new()
    }
}

/// Chunks of 8 columns whose low-byte table sums, weighted by 2^plane, fit in 16 bits:
/// each chunk adds at most 2 * 255 * (2^bits - 1) per row.
pub const fn flush_chunks(bits: usize) -> usize {
    65535 / (2 * 255 * ((1 << bits) - 1))
}

/// Entry `i` of table `t` as int16 (for the scalar kernel and tests).
#[inline]
pub fn entry(tables: &[u8], t: usize, i: usize) -> i32 {
    let b = &tables[t * TABLE_BYTES..];
    i16::from_le_bytes([b[i], b[16 + i]]) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_is_absmax_round_half_even() {
        let mut a = Activations::new();
        a.quantize(
            &[1.0, -0.5, 0.25, 0.0, 2.0, -2.0, 1.0 / 127.0, 0.0],
            1 << 20,
        );
        assert_eq!(a.scales, vec![2.0 / 127.0]);
        assert_eq!(&a.a[..8], &[64, -32, 16, 0, 127, -127, 0, 0]); // 63.5 -> 64, 31.75 -> 32
        assert_eq!(a.sum(0, 8), 64 - 32 + 16);
    }

    #[test]
    fn tables_hold_exact_subset_sums() {
        let mut a = Activations::new();
        let x: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.3).collect();
        a.quantize(&x, 1 << 20);
        a.build_tables();
        for t in 0..a.a.len() / 4 {
            for i in 0..16 {
                let want: i32 = (0..4)
                    .filter(|l| i >> l & 1 == 1)
                    .map(|l| a.a[4 * t + l] as i32)
                    .sum();
                assert_eq!(entry(&a.tables, t, i), want);
            }
        }
    }

    #[test]
    fn groups_get_their_own_scales() {
        let mut a = Activations::new();
        let x: Vec<f32> = (0..24).map(|i| if i < 8 { 100.0 } else { 1.0 }).collect();
        a.quantize(&x, 8);
        assert_eq!(a.scales.len(), 3);
        assert_eq!(a.a[8], 127);
        assert_eq!(a.scale_at(9), 1.0 / 127.0);
    }
}
