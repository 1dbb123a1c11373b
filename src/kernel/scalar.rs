//! The portable reference kernels. They define the exact integer semantics (and the float
//! operation order) that the AVX2 and NEON kernels must reproduce bit for bit.

use super::lut::{entry, entry8, Activations, Tables};
use crate::layout::blocks::IQ4_CODEBOOK;
use crate::layout::iq4::{self, Iq4Matrix};
use crate::layout::lut::{block_scale, sub_scale, Geometry, LutMatrix, Zero};
use crate::layout::q8::{Q8Matrix, Q8_BLOCK};
use half::f16;

/// Integer sums A = sum of q * a over one scale group, for the 16 rows of row block `rb`
/// (with int8 tables, the same sum in table units).
pub(crate) fn lut_group_ints(
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
pub(crate) struct GroupInput {
    pub f: f32,
    pub s: i32,
    /// With int8 tables the value of one table unit; 1 otherwise. Always a normal number: a
    /// SIMD combine may multiply by it speculatively, and an undefined or subnormal value there
    /// costs a microcode assist per multiply.
    pub unit: f32,
}

impl GroupInput {
    /// Those of every scale group of a matrix with `group` columns per group.
    pub(crate) fn all(act: &Activations, group: usize, groups: usize) -> Vec<GroupInput> {
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

/// A super-block's integer sums for 16 rows: a = sum over its groups of sc * A, and
/// b = sum of sc * o * S (offset codes) or of mn * S (affine), A being a group's `group_ints`
/// and S its activation sum. Without sub-scales sc = mn = 1 and a super-block is one group.
#[derive(Clone, Copy, Default)]
pub(crate) struct SuperInts {
    pub a: [i32; 16],
    pub b: [i32; 16],
}

/// Add group `grp`'s integer sums `acc` (activation sum `s`) to its super-block's.
#[allow(clippy::needless_range_loop)] // one row index reads several arrays
pub(crate) fn add_group(
    si: &mut SuperInts,
    acc: &[i32; 16],
    m: &LutMatrix,
    g: &Geometry,
    (rb, grp): (usize, usize),
    s: i32,
) {
    let scales = m.scales.as_slice();
    for rr in 0..16 {
        let (sc, mn) = sub_scale(scales, g, rb, grp, rr);
        si.a[rr] += sc * acc[rr];
        si.b[rr] += match m.zero {
            Zero::Offset(o) => sc * (o as i32 * s),
            Zero::Affine => mn * s,
        };
    }
}

/// Add one super-block's contribution to 16 row outputs: y += f * t with
/// t = d * (a - b) (offset) or d * a + m * b (affine), in this order; with int8 tables a is in
/// table units and becomes a * unit, and a - b is formed in floats.
#[allow(clippy::needless_range_loop)] // one row index reads several arrays
pub(crate) fn combine(
    y: &mut [f32; 16],
    si: &SuperInts,
    m: &LutMatrix,
    g: &Geometry,
    (rb, sb): (usize, usize),
    gi: GroupInput,
    kind: Tables,
) {
    let scales = m.scales.as_slice();
    for rr in 0..16 {
        let (d, mn) = block_scale(scales, g, rb, sb, rr);
        let (a, b, u) = (si.a[rr], si.b[rr], gi.unit);
        let t = match (m.zero, kind == Tables::Int8) {
            (Zero::Offset(_), false) => d * (a - b) as f32,
            (Zero::Affine, false) => d * a as f32 + mn * b as f32,
            (Zero::Offset(_), true) => d * (a as f32 * u - b as f32),
            (Zero::Affine, true) => d * (a as f32 * u) + mn * b as f32,
        };
        y[rr] += gi.f * t;
    }
}

/// The groups of super-block `sb`.
pub(crate) fn super_groups(g: &Geometry, sb: usize) -> std::ops::Range<usize> {
    sb * g.sup..((sb + 1) * g.sup).min(g.groups)
}

/// All integer accumulators, laid out `[row block][group][16]`.
pub(crate) fn lut_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
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
pub(crate) fn lut_gemv(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
) {
    let g = m.geometry();
    let data = m.data.as_slice();
    let kind = act.tables_built().expect("tables built");
    let gis = GroupInput::all(act, m.group, g.groups);
    for rb in rbs {
        let y16 = row_block(m, &g, &gis, kind, rb, |grp| {
            lut_group_ints(data, &g, &act.tables, kind, rb, grp)
        });
        store_row_block(m, rb, &y16, y);
    }
}

/// The 16 outputs of row block `rb`, given each group's integer sums (`ints`).
fn row_block(
    m: &LutMatrix,
    g: &Geometry,
    gis: &[GroupInput],
    kind: Tables,
    rb: usize,
    mut ints: impl FnMut(usize) -> [i32; 16],
) -> [f32; 16] {
    let mut y16 = [0f32; 16];
    for sb in 0..g.supers {
        let mut si = SuperInts::default();
        for grp in super_groups(g, sb) {
            add_group(&mut si, &ints(grp), m, g, (rb, grp), gis[grp].s);
        }
        combine(&mut y16, &si, m, g, (rb, sb), gis[sb * g.sup], kind);
    }
    y16
}

fn store_row_block(m: &LutMatrix, rb: usize, y16: &[f32; 16], y: &mut [f32]) {
    let n = (m.rows - rb * 16).min(16);
    y[rb * 16..rb * 16 + n].copy_from_slice(&y16[..n]);
}

/// Bytes of a row block's code tile: one byte per code, 16 rows by the padded columns.
pub(crate) fn tile_len(g: &Geometry) -> usize {
    16 * 8 * g.chunks
}

/// Unpack the codes of row block `rb` from bit-planes into a code tile, the layout the batched
/// kernels feed to int8 dot products: `[half h][quad k][row r][column l]`, the code of row
/// 16 rb + 8 h + r, column 4 k + l. One 32-byte vector of it holds 8 rows by 4 columns, so a
/// product with 4 broadcast activations sums each row in its own 32-bit lane.
pub(crate) fn unpack_tile(data: &[u8], g: &Geometry, rb: usize, tile: &mut [u8]) {
    let quads = 2 * g.chunks;
    tile[..tile_len(g)].fill(0);
    for c in 0..g.chunks {
        let blk = &data[(rb * g.chunks + c) * g.chunk_bytes..][..g.chunk_bytes];
        for (i, &b) in blk.iter().enumerate() {
            let (row, plane) = g.slot(i);
            for l in 0..8 {
                let k = 2 * c + l / 4; // bit l of a plane byte is column 8c + l
                tile[((row / 8) * quads + k) * 32 + (row % 8) * 4 + l % 4] |= (b >> l & 1) << plane;
            }
        }
    }
}

/// The integer sums of group `grp` for the 16 rows of a code tile: sum of q * a, the same
/// integers the exact tables give.
pub(crate) fn tile_group_ints(tile: &[u8], g: &Geometry, a: &[i8], grp: usize) -> [i32; 16] {
    let quads = 2 * g.chunks;
    let k0 = 2 * grp * g.group_chunks;
    let k1 = (k0 + 2 * g.group_chunks).min(quads);
    let mut acc = [0i32; 16];
    for (row, acc) in acc.iter_mut().enumerate() {
        for k in k0..k1 {
            let q = &tile[((row / 8) * quads + k) * 32 + (row % 8) * 4..][..4];
            *acc += (0..4)
                .map(|l| q[l] as i32 * a[4 * k + l] as i32)
                .sum::<i32>();
        }
    }
    acc
}

/// Y = W X for several inputs quantized without tables (see `kernel::lut_gemm`): each row block
/// is unpacked once into `tile`, then every input is multiplied with it.
pub(crate) fn lut_gemm(m: &LutMatrix, acts: &[Activations], ys: &mut [f32]) {
    let g = m.geometry();
    let gis: Vec<Vec<GroupInput>> = acts
        .iter()
        .map(|a| GroupInput::all(a, m.group, g.groups))
        .collect();
    let mut tile = vec![0u8; tile_len(&g)];
    for rb in 0..g.row_blocks {
        unpack_tile(m.data.as_slice(), &g, rb, &mut tile);
        for ((act, gis), y) in acts.iter().zip(&gis).zip(ys.chunks_exact_mut(m.rows)) {
            let y16 = row_block(m, &g, gis, Tables::Exact, rb, |grp| {
                tile_group_ints(&tile, &g, &act.a, grp)
            });
            store_row_block(m, rb, &y16, y);
        }
    }
}

/// The integer accumulators of the batched kernel for one input, `[row block][group][16]`, as
/// `lut_ints` lays them out (for tests).
pub(crate) fn tile_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    let g = m.geometry();
    let mut tile = vec![0u8; tile_len(&g)];
    out.clear();
    for rb in 0..g.row_blocks {
        unpack_tile(m.data.as_slice(), &g, rb, &mut tile);
        for grp in 0..g.groups {
            out.extend_from_slice(&tile_group_ints(&tile, &g, &act.a, grp));
        }
    }
}

/// Sum the 8 float lanes in the order the SIMD kernels do: (0+4, 1+5, 2+6, 3+7), then
/// (x0 + x2, x1 + x3), then the two.
pub(crate) fn reduce8(v: &[f32; 8]) -> f32 {
    let h = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (h[0] + h[2]) + (h[1] + h[3])
}

/// y = W x for an 8-bit matrix (Q8_0 blocks). Lane m of a block holds the products of
/// elements 4m..4m+3; each lane accumulates s * (d * f) in float.
pub(crate) fn q8_gemv(m: &Q8Matrix, act: &Activations, y: &mut [f32]) {
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

/// y = W x for a 4-bit codebook matrix (IQ4_NL, IQ4_XS). Per row and block, the integer
/// li = sum over the block's groups of sc * (sum of codebook value times activation), then
/// y += li * (d * f) in float, block after block.
pub(crate) fn iq4_gemv(m: &Iq4Matrix, act: &Activations, y: &mut [f32]) {
    let (bl, nb) = (m.block(), m.cols / m.block());
    for g in 0..m.row_groups() {
        let mut acc = [0f32; iq4::ROWS];
        for b in 0..nb {
            let tile = m.tile(g, b);
            let a = &act.a[b * bl..][..bl];
            for (i, acc) in acc.iter_mut().enumerate() {
                let mut li = 0i32;
                for s in 0..m.subs() {
                    let dot: i32 = (32 * s..32 * s + 32)
                        .map(|e| IQ4_CODEBOOK[m.code(tile, i, e) as usize] as i32 * a[e] as i32)
                        .sum();
                    li += m.sub_scale(tile, s, i) * dot;
                }
                let d = f16::from_le_bytes([tile[2 * i], tile[2 * i + 1]]).to_f32();
                *acc += li as f32 * (d * act.scale_at(b * bl));
            }
        }
        let r0 = g * iq4::ROWS;
        let n = (m.rows - r0).min(iq4::ROWS);
        y[r0..r0 + n].copy_from_slice(&acc[..n]);
    }
}
