//! The input side of the T-MAC kernels: an activation vector quantized to int8, and the lookup
//! tables built from it once and shared by every matrix that reads it.
//!
//! Quantization: per activation group (the whole vector by default), absmax to 127,
//! round-half-even, clamp to [-128, 127], as BitNet's W1.58A8 defines it. The group's dequant
//! factor is amax / 127.
//!
//! Tables: for every group of 4 activations t (a 4-bit "bit-plane" index i selects which of the
//! four are summed), `T_t[i]` = sum of `a[4t + l]` over the set bits l of i. Two kinds:
//! - exact (the default): entries lie in [-512, 508], so they are exact in int16; each table is
//!   stored as its 16 low bytes then its 16 high bytes, 32 bytes per table, so the tables of a
//!   2560-wide input (20 KiB) stay in L1. A ternary model gives exactly its W1.58A8 result.
//! - int8 (the `tables` knob, lossy, as T-MAC's table quantization): per activation group, the
//!   entries are rescaled so the largest magnitude is 127 and rounded, 16 bytes per table. One
//!   lookup per table instead of two; the sums are about 7-bit accurate.

/// Bytes per exact table: `lo[16] hi[16]`.
pub(crate) const TABLE_BYTES: usize = 32;
/// Bytes per int8 table.
pub(crate) const TABLE8_BYTES: usize = 16;

/// Which lookup tables the LUT kernels read (a tuning knob, see `Knobs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tables {
    /// int16 entries: exact sums of int8 activations.
    Exact,
    /// int8 entries rescaled per activation group: faster, lossy.
    Int8,
}

impl Tables {
    pub fn name(self) -> &'static str {
        match self {
            Tables::Exact => "exact",
            Tables::Int8 => "int8",
        }
    }

    pub fn from_name(s: &str) -> Option<Tables> {
        [Tables::Exact, Tables::Int8]
            .into_iter()
            .find(|t| t.name() == s)
    }
}

/// A quantized input vector and its lookup tables. The fields are the crate's: what the kernels
/// read is only ever built by `quantize` and `build_tables`, so its sizes agree.
pub struct Activations {
    /// Length of the input (before padding).
    pub(crate) k: usize,
    /// Padded to a multiple of 8 with zeros.
    pub(crate) a: Vec<i8>,
    /// Activations per scale group (a multiple of 8, or >= k for one scale).
    pub(crate) group: usize,
    /// Dequant factor of each group.
    pub(crate) scales: Vec<f32>,
    /// Prefix sums of `a` at every multiple of 8: `sums8[c] = a[0] + ... + a[8c - 1]`.
    pub(crate) sums8: Vec<i32>,
    /// K/4 tables of kind `kind`, built by `build_tables`.
    pub(crate) tables: Vec<u8>,
    /// Int8 tables only: per activation group, the value of one table unit (entries times it
    /// approximate the exact sums).
    pub(crate) lut_scales: Vec<f32>,
    built: Option<Tables>,
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
            lut_scales: Vec::new(),
            built: None,
        }
    }

    /// Quantize `x` with one scale per `group` activations (`group` >= x.len() for one scale).
    pub fn quantize(&mut self, x: &[f32], group: usize) {
        let k = x.len();
        let kp = k.div_ceil(8) * 8;
        let group = if group >= k { kp.max(8) } else { group };
        assert!(
            group > 0 && group % 8 == 0,
            "activation group {group}: not a multiple of 8"
        );
        self.k = k;
        self.group = group;
        self.a.clear();
        self.a.resize(kp, 0);
        self.scales.clear();
        for (xs, qs) in x.chunks(group).zip(self.a.chunks_mut(group)) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            // a NaN input stays visible: the scale becomes NaN, so does the output
            let s = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            quantize_int8(xs, s, &mut qs[..xs.len()]);
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
        self.built = None;
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

    /// The dequant factor of each of `n` blocks of `block` activations (the first of each).
    pub(crate) fn block_scales(&self, block: usize, n: usize) -> Vec<f32> {
        (0..n).map(|b| self.scale_at(b * block)).collect()
    }

    /// Build the lookup tables of `kind` (once per input; later calls for the same kind are free).
    pub fn build_tables(&mut self, kind: Tables) {
        if self.built == Some(kind) {
            return;
        }
        let nt = self.a.len() / 4;
        self.lut_scales.clear();
        match kind {
            Tables::Exact => {
                self.tables.resize(nt * TABLE_BYTES, 0);
                exact_tables(&self.a, &mut self.tables);
            }
            Tables::Int8 => {
                self.tables.resize(nt * TABLE8_BYTES, 0);
                let per_group = self.group * TABLE8_BYTES / 4;
                let groups = self.tables.chunks_mut(per_group);
                for (grp, tables) in self.a.chunks(self.group).zip(groups) {
                    // the largest |entry| of a table: all its positive or all its negative values
                    let top = grp
                        .chunks_exact(4)
                        .map(|q| {
                            let (pos, neg) = q.iter().fold((0i32, 0i32), |(p, n), &v| {
                                (p + (v as i32).max(0), n - (v as i32).min(0))
                            });
                            pos.max(neg)
                        })
                        .max()
                        .unwrap_or(0);
                    self.lut_scales.push(top as f32 / 127.0);
                    let r = int8_ratio(top);
                    for (q, out) in grp.chunks_exact(4).zip(tables.chunks_exact_mut(16)) {
                        let e = subset_sums(q);
                        for i in 0..16 {
                            out[i] = to_int8(e[i], r) as u8;
                        }
                    }
                }
            }
        }
        self.built = Some(kind);
    }

    /// The int8 activations, padded with zeros to a multiple of 8.
    pub fn quantized(&self) -> &[i8] {
        &self.a
    }

    /// The lookup tables (`TABLE_BYTES` or `TABLE8_BYTES` per 4 activations).
    pub fn tables(&self) -> &[u8] {
        &self.tables
    }

    /// The kind of tables built for the current input, if any.
    pub fn tables_built(&self) -> Option<Tables> {
        self.built
    }

    /// Value of one int8 table unit for the activation at index k.
    pub fn lut_scale_at(&self, k: usize) -> f32 {
        self.lut_scales[k / self.group]
    }
}

/// q = round_even(x * s) clamped to [-128, 127] (NaN to 0), element-wise; AVX2 where the CPU
/// has it, with the same float operations.
pub(crate) fn quantize_int8(x: &[f32], s: f32, q: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if super::isa() != super::Isa::SCALAR {
        // SAFETY: the best instruction set of this CPU is AVX2 (isa() is detection's result).
        return unsafe { super::avx2::quantize_int8(x, s, q) };
    }
    quantize_int8_scalar(x, s, q)
}

pub(crate) fn quantize_int8_scalar(x: &[f32], s: f32, q: &mut [i8]) {
    for (q, &v) in q.iter_mut().zip(x) {
        *q = crate::math::round_even32(v * s).clamp(-128.0, 127.0) as i8;
    }
}

/// The exact tables of `a` into `out` (`TABLE_BYTES` per 4 activations); AVX2 where the CPU
/// has it (the same integers).
pub(crate) fn exact_tables(a: &[i8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::isa() != super::Isa::SCALAR {
        // SAFETY: the best instruction set of this CPU is AVX2 (isa() is detection's result).
        return unsafe { super::avx2::exact_tables(a, out) };
    }
    exact_tables_scalar(a, out)
}

pub(crate) fn exact_tables_scalar(a: &[i8], out: &mut [u8]) {
    for (q, out) in a.chunks_exact(4).zip(out.chunks_exact_mut(TABLE_BYTES)) {
        let e = subset_sums(q);
        for i in 0..16 {
            let [lo, hi] = e[i].to_le_bytes();
            out[i] = lo;
            out[16 + i] = hi;
        }
    }
}

/// The 16 subset sums of 4 activations: entry i sums a[l] over the set bits l of i.
fn subset_sums(a: &[i8]) -> [i16; 16] {
    let mut e = [0i16; 16];
    for i in 1..16usize {
        // entry i = entry (i without its lowest set bit) + that bit's activation
        let low = i.trailing_zeros() as usize;
        e[i] = e[i & (i - 1)] + a[low] as i16;
    }
    e
}

/// 127 / top in 16.16 fixed point (0 for an all-zero group). Integers, so every CPU agrees.
fn int8_ratio(top: i32) -> i32 {
    if top > 0 {
        ((127 << 16) + top / 2) / top
    } else {
        0
    }
}

/// An entry in table units: v * 127 / top, rounded. For |v| <= top <= 512 the result stays in
/// [-127, 127]: the ratio is at most 127 * 2^16 / top + 1/2, so |v| * ratio + 2^15 stays below
/// 128 * 2^16.
fn to_int8(v: i16, ratio: i32) -> i8 {
    ((v as i32 * ratio + (1 << 15)) >> 16) as i8
}

impl Default for Activations {
    fn default() -> Self {
        Activations::new()
    }
}

/// Chunks of 8 columns whose low-byte table sums, weighted by 2^plane, fit in 16 bits:
/// each chunk adds at most 2 * 255 * (2^bits - 1) per row.
pub(crate) const fn flush_chunks(bits: usize) -> usize {
    65535 / (2 * 255 * ((1 << bits) - 1))
}

/// Chunks of 8 columns whose int8-table sums, weighted by 2^plane, fit in signed 16 bits:
/// each chunk adds at most 2 * 127 * (2^bits - 1) in magnitude per row.
pub(crate) const fn flush_chunks8(bits: usize) -> usize {
    32767 / (2 * 127 * ((1 << bits) - 1))
}

/// Entry `i` of table `t` as int16 (for the scalar kernel and tests).
#[inline]
pub(crate) fn entry(tables: &[u8], t: usize, i: usize) -> i32 {
    let b = &tables[t * TABLE_BYTES..];
    i16::from_le_bytes([b[i], b[16 + i]]) as i32
}

/// Entry `i` of int8 table `t`.
#[inline]
pub fn entry8(tables: &[u8], t: usize, i: usize) -> i32 {
    tables[t * TABLE8_BYTES + i] as i8 as i32
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

    /// The AVX2 int8 quantizer equals the scalar one, edge values included.
    #[test]
    fn int8_quantizer_twins_agree() {
        let mut x: Vec<f32> = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            126.5,
            127.49,
            -128.5,
            1e30,
            -1e30,
            -0.0,
            1e-40,
        ];
        let mut state = 9u32;
        for _ in 0..1000 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            x.push((state >> 8) as f32 / (1 << 16) as f32 - 128.0);
        }
        for s in [1.0, 0.0, 0.37, 127.0 / 3.0, f32::NAN] {
            let (mut a, mut b) = (vec![0i8; x.len()], vec![0i8; x.len()]);
            quantize_int8_scalar(&x, s, &mut a);
            quantize_int8(&x, s, &mut b);
            assert_eq!(a, b, "scale {s}");
        }
    }

    /// The AVX2 table build equals the scalar one, extreme activations included.
    #[test]
    fn exact_table_twins_agree() {
        let mut a: Vec<i8> = vec![-128, -128, -128, -128, 127, 127, 127, 127, -128, 127, 0, -1];
        let mut state = 5u32;
        for _ in 0..1001 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            a.push((state >> 24) as u8 as i8);
        }
        let (mut want, mut got) = (vec![0u8; a.len() / 4 * 32], vec![1u8; a.len() / 4 * 32]);
        exact_tables_scalar(&a, &mut want);
        exact_tables(&a, &mut got);
        assert_eq!(want, got);
    }

    #[test]
    fn tables_hold_exact_subset_sums() {
        let mut a = Activations::new();
        let x: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.3).collect();
        a.quantize(&x, 1 << 20);
        a.build_tables(Tables::Exact);
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
    fn int8_tables_round_each_group_to_127() {
        let mut a = Activations::new();
        // group 0 holds the outlier; group 1 is small and gets its own, finer unit
        let x: Vec<f32> = (0..16)
            .map(|i| match i {
                0 => 100.0,
                i if i < 8 => -7.0,
                i => (i as f32 - 12.0) * 0.1,
            })
            .collect();
        a.quantize(&x, 8);
        a.build_tables(Tables::Int8);
        assert_eq!(a.tables.len(), 4 * TABLE8_BYTES);
        for grp in 0..2 {
            let top = (2 * grp..2 * grp + 2)
                .flat_map(|t| (0..16).map(move |i| (t, i)))
                .map(|(t, i)| {
                    (0..4)
                        .filter(|l| i >> l & 1 == 1)
                        .map(|l| a.a[4 * t + l] as i32)
                        .sum::<i32>()
                })
                .map(i32::abs)
                .max()
                .unwrap();
            assert_eq!(a.lut_scales[grp], top as f32 / 127.0);
            for t in 2 * grp..2 * grp + 2 {
                for i in 0..16 {
                    let exact: i32 = (0..4)
                        .filter(|l| i >> l & 1 == 1)
                        .map(|l| a.a[4 * t + l] as i32)
                        .sum();
                    let want = exact as f64 * 127.0 / top as f64;
                    let got = entry8(&a.tables, t, i) as f64;
                    assert!((got - want).abs() <= 0.51, "table {t} entry {i}");
                }
            }
        }
        // a second build of another kind replaces the first
        a.build_tables(Tables::Exact);
        assert_eq!(a.tables.len(), 4 * TABLE_BYTES);
        assert_eq!(a.tables_built(), Some(Tables::Exact));
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
