//! The portable reference kernels. They define the exact integer semantics (and the float
//! operation order) that the AVX2 and NEON kernels must reproduce bit for bit.

use super::lut::{entry, entry8, Activations, Tables};
use crate::quant::lut::{scale_of, Geometry, LutMatrix, Zero};
use crate::quant::q8::{Q8Matrix, Q8_BLOCK};
use half::f16;

/// Integer sums A = sum of q * a over one scale group, for the 16 rows of row block `rb`
/// (with int8 tables, the same sum in table units).
pub fn lut_group_ints(
    data: &[u8],
    g: &Geometry,
    tables: &[u8],
    kind: Tables,
    rb: usize,
    grp: usize,
) -> [i32; 16] {
    match kind {
        Tables::Exact => group_sums(data, g, tables, rb, grp, entry),
        Tables::Int8 => group_sums(data, g, tables, rb, grp, entry8),
    }
}

/// `lut_group_ints` with the table lookup `look` (a generic, so each kind is inlined).
fn group_sums(
    data: &[u8],
    g: &Geometry,
    tables: &[u8],
    rb: usize,
    grp: usize,
    look: impl Fn(&[u8], usize, usize) -> i32,
) -> [i32; 16] {
    let mut acc = [0i32; 16];
    let c0 = grp * g.group_chunks;
    let c1 = (c0 + g.group_chunks).min(g.chunks);
    for c in c0..c1 {
        let blk = &data[(rb * g.chunks + c) * g.chunk_bytes..][..g.chunk_bytes];
        for (i, &b) in blk.iter().enumerate() {
            let (row, plane) = g.slot(i);
            let v =
                look(tables, 2 * c, (b & 15) as usize) + look(tables, 2 * c + 1, (b >> 4) as usize);
            acc[row] += v << plane;
        }
    }
    acc
}

/// What one scale group's integer sums are combined with: the activations' dequant factor f,
/// their sum s, and with int8 tables the value of one table unit.
#[derive(Clone, Copy)]
pub struct GroupInput {
    pub f: f32,
    pub s: i32,
    /// With int8 tables the value of one table unit; 1 otherwise. Always a normal number: a
    /// SIMD combine may multiply by it speculatively, and an undefined or subnormal value there
    /// costs a microcode assist per multiply.
    pub unit: f32,
}

impl GroupInput {
    /// Those of every scale group of a matrix with `group` columns per group.
    pub fn all(act: &Activations, group: usize, groups: usize) -> Vec<GroupInput> {
        let int8 = act.tables_built() == Some(Tables::Int8);
        (0..groups)
            .map(|grp| GroupInput {
                f: act.scale_at(grp * group),
                s: act.sum(grp * group, group),
                unit: if int8 {
                    act.lut_scale_at(grp * group)
                } else {
                    1.0
                },
            })
            .collect()
    }
}

/// Add one group's contribution to 16 row outputs: y += f * (d * A + m * S), in this order;
/// with a zero offset o, A - o * S is formed in integers first. With int8 tables A is
/// (A in table units) * unit, and A - o * S is formed in floats.
pub fn combine(
    y: &mut [f32; 16],
    acc: &[i32; 16],
    m: &LutMatrix,
    g: &Geometry,
    (rb, grp): (usize, usize),
    gi: GroupInput,
    kind: Tables,
) {
    let (scales, zero) = (m.scales.as_slice(), m.zero);
    for rr in 0..16 {
        let (d, mn) = scale_of(scales, g, zero, rb, grp, rr);
        let u = gi.unit;
        let t = match (zero, kind == Tables::Int8) {
            (Zero::Offset(o), false) => d * (acc[rr] - o as i32 * gi.s) as f32,
            (Zero::Affine, false) => d * acc[rr] as f32 + mn * gi.s as f32,
            (Zero::Offset(o), true) => d * (acc[rr] as f32 * u - (o as i32 * gi.s) as f32),
            (Zero::Affine, true) => d * (acc[rr] as f32 * u) + mn * gi.s as f32,
        };
        y[rr] += gi.f * t;
    }
}

/// All integer accumulators, laid out [row block][group][16].
pub fn lut_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    let g = m.geometry();
    let kind = act.tables_built().expect("tables built");
    out.clear();
    for rb in 0..g.row_blocks {
        for grp in 0..g.groups {
            let d = m.data.as_slice();
            out.extend_from_slice(&lut_group_ints(d, &g, &act.tables, kind, rb, grp));
        }
    }
}

/// y (rows) = W x for a LUT matrix, row blocks `rbs` only; `act` must have its tables built.
pub fn lut_gemv(m: &LutMatrix, act: &Activations, y: &mut [f32], rbs: std::ops::Range<usize>) {
    let g = m.geometry();
    let data = m.data.as_slice();
    let kind = act.tables_built().expect("tables built");
    let gis = GroupInput::all(act, m.group, g.groups);
    for rb in rbs {
        let mut y16 = [0f32; 16];
        for (grp, &gi) in gis.iter().enumerate() {
            let acc = lut_group_ints(data, &g, &act.tables, kind, rb, grp);
            combine(&mut y16, &acc, m, &g, (rb, grp), gi, kind);
        }
        let n = (m.rows - rb * 16).min(16);
        y[rb * 16..rb * 16 + n].copy_from_slice(&y16[..n]);
    }
}

/// Sum the 8 float lanes in the order the SIMD kernels do: (0+4, 1+5, 2+6, 3+7), then
/// (x0 + x2, x1 + x3), then the two.
pub fn reduce8(v: &[f32; 8]) -> f32 {
    let h = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (h[0] + h[2]) + (h[1] + h[3])
}

/// y = W x for an 8-bit matrix (Q8_0 blocks). Lane m of a block holds the products of
/// elements 4m..4m+3; each lane accumulates s * (d * f) in float.
pub fn q8_gemv(m: &Q8Matrix, act: &Activations, y: &mut [f32]) {
    let (q, d) = m.parts();
    let st = m.strides();
    let nb = m.cols / Q8_BLOCK;
    for (r, yr) in y.iter_mut().enumerate().take(m.rows) {
        let mut acc = [0f32; 8];
        for b in 0..nb {
            let (i, at) = (r * nb + b, (r * nb + b) * st.d_stride);
            let sc = f16::from_le_bytes([d[at], d[at + 1]]).to_f32() * act.scale_at(b * Q8_BLOCK);
            let qs = &q[i * st.q_stride + st.q_skip..][..Q8_BLOCK];
            let a = &act.a[b * Q8_BLOCK..];
            for (lane, l) in acc.iter_mut().enumerate() {
                let s: i32 = (4 * lane..4 * lane + 4)
                    .map(|i| qs[i] as i8 as i32 * a[i] as i32)
                    .sum();
                *l += s as f32 * sc;
            }
        }
        *yr = reduce8(&acc);
    }
}
