//! NEON kernels (aarch64). Same integer results and float operation order as `scalar.rs`.
//!
//! LUT GEMV: per 16 bytes of weights (8 rows x 2 bit-planes x 8 columns) two `tbl` lookups per
//! table byte-half; each row's pair of planes is combined as even + 2 * odd with a pairwise
//! widening add plus the odd byte shifted down. The lone plane of an odd code width (16 rows x
//! 8 columns) is looked up the same way, widened and shifted to its weight. Low-byte sums are
//! unsigned 16-bit (wrapping, read back unsigned) until widened, exactly as in the AVX2 kernel.
//! 8-bit GEMV: `sdot` where the CPU has dotprod (Cortex-A76 / Pi 5), `smull` + pairwise adds
//! otherwise (Cortex-A72 / Pi 4); both give the same lane sums.
//! With int8 tables (the `tables` knob) each table is one `tbl` lookup per index vector, summed
//! as signed 16-bit pairs.
//! Knobs: `prefetch`, `tables`, and `row_tile`: with 2, two row blocks share each table load
//! (4 table registers and 16 accumulators fit NEON's 32), which halves the table loads of an
//! in-order core's single load pipe; `tmac tune` finds out on the device whether it pays.

use super::lut::{Activations, Tables, TABLE8_BYTES, TABLE_BYTES};
use super::scalar::GroupInput;
use crate::layout::blocks::IQ4_CODEBOOK;
use crate::layout::iq4::Iq4Matrix;
use crate::layout::lut::{Geometry, LutMatrix, Zero};
use crate::layout::q8::{Q8Matrix, Q8Strides, Q8_BLOCK};
use std::arch::aarch64::*;
use std::arch::asm;
use std::sync::OnceLock;

/// even + 2 * odd for each pair of unsigned bytes, as u16.
#[inline(always)]
unsafe fn pair_u8(v: uint8x16_t) -> uint16x8_t {
    vaddq_u16(vpaddlq_u8(v), vshrq_n_u16(vreinterpretq_u16_u8(v), 8))
}

/// even + 2 * odd for each pair of signed bytes, as i16.
#[inline(always)]
unsafe fn pair_s8(v: int8x16_t) -> int16x8_t {
    vaddq_s16(vpaddlq_s8(v), vshrq_n_s16(vreinterpretq_s16_s8(v), 8))
}

/// Hint the CPU to fetch the cache line at `p` (never dereferenced).
#[inline(always)]
unsafe fn prefetch(p: *const u8) {
    // SAFETY: prfm is a hint; it cannot fault, whatever the address.
    asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
}

/// Integer sums of one scale group for the RB row blocks from `rb0`, each as rows 0-3, 4-7,
/// 8-11, 12-15; the RB row blocks share each table load. `ahead` is how far ahead of the weight
/// stream to prefetch. I8: the tables are int8 (sums in table units), else exact.
#[target_feature(enable = "neon")]
unsafe fn group_ints<const RB: usize, const I8: bool>(
    data: &[u8],
    g: &Geometry,
    tables: &[u8],
    rb0: usize,
    grp: usize,
    ahead: usize,
) -> [[int32x4_t; 4]; RB] {
    let c0 = grp * g.group_chunks;
    let c1 = (c0 + g.group_chunks).min(g.chunks);
    let (table_bytes, flush) = if I8 {
        (TABLE8_BYTES, super::lut::flush_chunks8(g.bits))
    } else {
        (TABLE_BYTES, super::lut::flush_chunks(g.bits))
    };
    debug_assert!(data.len() >= ((rb0 + RB - 1) * g.chunks + c1) * g.chunk_bytes);
    debug_assert!(tables.len() >= 2 * c1 * table_bytes);
    let mask = vdupq_n_u8(0x0F);
    let lone_shift = vdupq_n_s16(2 * g.plane_pairs as i16);
    let mut acc = [[vdupq_n_s32(0); 4]; RB];
    let (wp, tp) = (data.as_ptr(), tables.as_ptr());
    let mut c = c0;
    while c < c1 {
        let cend = (c + flush).min(c1);
        // exact: low-byte sums (unsigned) and high-byte sums; int8: the sums, in shi
        let mut slo = [[vdupq_n_u16(0); 2]; RB];
        let mut shi = [[vdupq_n_s16(0); 2]; RB];
        for cc in c..cend {
            // SAFETY: tables 2cc, 2cc+1 and weight blocks (rb0 + r, cc, pp) are in bounds
            // (asserted).
            let t = tp.add(2 * cc * table_bytes);
            // int8: the two tables are the signed "high" halves; exact: lo, hi, lo, hi
            let (tl0, tl1) = (vld1q_u8(t), vld1q_u8(t.add(table_bytes)));
            let (th0, th1) = if I8 {
                (vreinterpretq_s8_u8(tl0), vreinterpretq_s8_u8(tl1))
            } else {
                (
                    vld1q_s8(t.add(16) as *const i8),
                    vld1q_s8(t.add(48) as *const i8),
                )
            };
            for r in 0..RB {
                let base = wp.add(((rb0 + r) * g.chunks + cc) * g.chunk_bytes);
                prefetch(base.wrapping_add(ahead));
                for pp in 0..g.plane_pairs {
                    let blk = base.add(pp * 32);
                    for h in 0..2 {
                        let w = vld1q_u8(blk.add(16 * h));
                        let i0 = vandq_u8(w, mask);
                        let i1 = vshrq_n_u8(w, 4);
                        let hi =
                            vaddq_s16(pair_s8(vqtbl1q_s8(th0, i0)), pair_s8(vqtbl1q_s8(th1, i1)));
                        // plane pair pp weighs 4^pp
                        let hi = match pp {
                            0 => hi,
                            1 => vshlq_n_s16(hi, 2),
                            _ => vshlq_n_s16(hi, 4),
                        };
                        shi[r][h] = vaddq_s16(shi[r][h], hi);
                        if !I8 {
                            let lo = vaddq_u16(
                                pair_u8(vqtbl1q_u8(tl0, i0)),
                                pair_u8(vqtbl1q_u8(tl1, i1)),
                            );
                            let lo = match pp {
                                0 => lo,
                                1 => vshlq_n_u16(lo, 2),
                                _ => vshlq_n_u16(lo, 4),
                            };
                            slo[r][h] = vaddq_u16(slo[r][h], lo);
                        }
                    }
                }
                if g.bits % 2 == 1 {
                    // byte j is row j: rows 0-7 widen into half 0, rows 8-15 into half 1
                    let w = vld1q_u8(base.add(g.plane_pairs * 32));
                    let (i0, i1) = (vandq_u8(w, mask), vshrq_n_u8(w, 4));
                    let (h0, h1) = (vqtbl1q_s8(th0, i0), vqtbl1q_s8(th1, i1));
                    let hi = [
                        vaddl_s8(vget_low_s8(h0), vget_low_s8(h1)),
                        vaddl_high_s8(h0, h1),
                    ];
                    for h in 0..2 {
                        shi[r][h] = vaddq_s16(shi[r][h], vshlq_s16(hi[h], lone_shift));
                    }
                    if !I8 {
                        let (l0, l1) = (vqtbl1q_u8(tl0, i0), vqtbl1q_u8(tl1, i1));
                        let lo = [
                            vaddl_u8(vget_low_u8(l0), vget_low_u8(l1)),
                            vaddl_high_u8(l0, l1),
                        ];
                        for h in 0..2 {
                            slo[r][h] = vaddq_u16(slo[r][h], vshlq_u16(lo[h], lone_shift));
                        }
                    }
                }
            }
        }
        // exact: value = low sum (unsigned 16-bit) + 256 * high sum (signed 16-bit);
        // int8: the signed 16-bit sum
        for (r, acc) in acc.iter_mut().enumerate() {
            for h in 0..2 {
                let shi = shi[r][h];
                let (mut a, mut b) = (vmovl_s16(vget_low_s16(shi)), vmovl_high_s16(shi));
                if !I8 {
                    let lo_a = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(slo[r][h])));
                    let lo_b = vreinterpretq_s32_u32(vmovl_high_u16(slo[r][h]));
                    a = vaddq_s32(lo_a, vshlq_n_s32(a, 8));
                    b = vaddq_s32(lo_b, vshlq_n_s32(b, 8));
                }
                acc[2 * h] = vaddq_s32(acc[2 * h], a);
                acc[2 * h + 1] = vaddq_s32(acc[2 * h + 1], b);
            }
        }
        c = cend;
    }
    acc
}

/// Four f16 values (raw bits) to f32, exactly, for finite inputs: shift the exponent and
/// mantissa into place, scale by 2^112 (subnormals come out right), then restore the sign.
#[inline(always)]
unsafe fn f16x4_to_f32(p: *const u8) -> float32x4_t {
    let h = vmovl_u16(vld1_u16(p as *const u16));
    let mag = vshlq_n_u32(vandq_u32(h, vdupq_n_u32(0x7FFF)), 13);
    let v = vmulq_f32(
        vreinterpretq_f32_u32(mag),
        vdupq_n_f32(f32::from_bits(0x7780_0000)),
    ); // 2^112
    let sign = vshlq_n_u32(vandq_u32(h, vdupq_n_u32(0x8000)), 16);
    vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(v), sign))
}

/// All integer accumulators, laid out [row block][group][16] (for tests).
///
/// # Safety
/// NEON must be available; `act` must have its tables built for this matrix's width.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn lut_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    let g = m.geometry();
    out.clear();
    for rb in 0..g.row_blocks {
        for grp in 0..g.groups {
            let (data, t) = (m.data.as_slice(), &act.tables);
            let [acc] = match act.tables_built() {
                Some(Tables::Int8) => group_ints::<1, true>(data, &g, t, rb, grp, 0),
                _ => group_ints::<1, false>(data, &g, t, rb, grp, 0),
            };
            let mut v = [0i32; 16];
            for (i, a) in acc.iter().enumerate() {
                // SAFETY: v has room for 16 i32.
                vst1q_s32(v.as_mut_ptr().add(4 * i), *a);
            }
            out.extend_from_slice(&v);
        }
    }
}

/// A super-block's integer sums for one row block (see scalar::SuperInts), rows in quarters.
#[derive(Clone, Copy)]
struct SuperInts {
    a: [int32x4_t; 4],
    b: [int32x4_t; 4],
}

/// Add one group's integer sums to its super-block's (scalar::add_group). SUB: the matrix has
/// sub-scales at `sp` (16 sc, then 16 mn if affine); else sc = mn = 1.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // one row index reads several arrays
unsafe fn add_group<const SUB: bool>(
    si: &mut SuperInts,
    acc: &[int32x4_t; 4],
    sp: *const u8,
    zero: Zero,
    s: i32,
) {
    let sv = vdupq_n_s32(match zero {
        Zero::Offset(o) => o as i32 * s,
        Zero::Affine => s,
    });
    if !SUB {
        // a super-block is this one group: its sums are the group's
        *si = SuperInts {
            a: *acc,
            b: [sv; 4],
        };
        return;
    }
    // SAFETY: the caller passes the sub-scales of this (row block, group): 16 or 32 bytes.
    let sc8 = vld1q_s8(sp as *const i8);
    let sc16 = [vmovl_s8(vget_low_s8(sc8)), vmovl_high_s8(sc8)];
    let k16 = match zero {
        Zero::Offset(_) => sc16,
        Zero::Affine => {
            let mn8 = vld1q_u8(sp.add(16));
            [
                vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn8))),
                vreinterpretq_s16_u16(vmovl_high_u8(mn8)),
            ]
        }
    };
    for i in 0..4 {
        let widen = |v: &[int16x8_t; 2]| match i % 2 {
            0 => vmovl_s16(vget_low_s16(v[i / 2])),
            _ => vmovl_high_s16(v[i / 2]),
        };
        si.a[i] = vmlaq_s32(si.a[i], widen(&sc16), acc[i]);
        si.b[i] = vmlaq_s32(si.b[i], widen(&k16), sv);
    }
}

/// y for the RB row blocks from `rb0`, with int8 tables if I8 and sub-scales if SUB (see
/// scalar::lut_gemv for the semantics).
#[inline(always)]
unsafe fn lut_tile<const RB: usize, const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    g: &Geometry,
    act: &Activations,
    gis: &[GroupInput],
    rb0: usize,
    ahead: usize,
    y: &mut [f32],
) {
    let data = m.data.as_slice();
    let rbs = std::array::from_fn(|r| rb0 + r);
    let out = tile_outputs::<RB, I8, SUB>(m, g, rbs, [gis; RB], |grp| {
        group_ints::<RB, I8>(data, g, &act.tables, rb0, grp, ahead)
    });
    for (r, y16) in out.iter().enumerate() {
        store_row_block(m, rb0 + r, y16, y);
    }
}

fn store_row_block(m: &LutMatrix, rb: usize, y16: &[f32; 16], y: &mut [f32]) {
    let n = (m.rows - rb * 16).min(16);
    y[rb * 16..rb * 16 + n].copy_from_slice(&y16[..n]);
}

/// The 16 outputs of each of RB row blocks `rbs[r]`, with its inputs' group values `gis[r]`,
/// given every group's integer sums (`ints`): the super-block sums, then the scales.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // one row index reads several arrays
unsafe fn tile_outputs<const RB: usize, const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    g: &Geometry,
    rbs: [usize; RB],
    gis: [&[GroupInput]; RB],
    mut ints: impl FnMut(usize) -> [[int32x4_t; 4]; RB],
) -> [[f32; 16]; RB] {
    let scales = m.scales.as_slice();
    let zero_si = SuperInts {
        a: [vdupq_n_s32(0); 4],
        b: [vdupq_n_s32(0); 4],
    };
    let mut yv = [[vdupq_n_f32(0.0); 4]; RB];
    for sb in 0..g.supers {
        let mut si = [zero_si; RB];
        let groups = super::scalar::super_groups(g, sb);
        let first = groups.start;
        for grp in groups {
            let accs = ints(grp);
            for (r, acc) in accs.iter().enumerate() {
                // SAFETY: the sub-scales of (rbs[r], grp) are in bounds (scales_len checked at
                // validation); without SUB the pointer is not read.
                let sp = scales.as_ptr().wrapping_add(g.sub_at(rbs[r], grp));
                add_group::<SUB>(&mut si[r], acc, sp, m.zero, gis[r][grp].s);
            }
        }
        for (r, si) in si.iter().enumerate() {
            let gi = gis[r][first];
            let f = vdupq_n_f32(gi.f);
            // SAFETY: the scales of (rbs[r], sb) are in bounds (checked at validation).
            let hp = scales.as_ptr().add(g.head(rbs[r], sb));
            for i in 0..4 {
                let d = f16x4_to_f32(hp.add(8 * i));
                // a in floats: exact, or table units times the unit (see scalar::combine)
                let a = match I8 {
                    false => vcvtq_f32_s32(si.a[i]),
                    true => vmulq_f32(vcvtq_f32_s32(si.a[i]), vdupq_n_f32(gi.unit)),
                };
                let t = match (m.zero, I8) {
                    (Zero::Offset(_), false) => {
                        vmulq_f32(d, vcvtq_f32_s32(vsubq_s32(si.a[i], si.b[i])))
                    }
                    (Zero::Offset(_), true) => vmulq_f32(d, vsubq_f32(a, vcvtq_f32_s32(si.b[i]))),
                    (Zero::Affine, _) => {
                        let mm = f16x4_to_f32(hp.add(32 + 8 * i));
                        vaddq_f32(vmulq_f32(d, a), vmulq_f32(mm, vcvtq_f32_s32(si.b[i])))
                    }
                };
                yv[r][i] = vaddq_f32(yv[r][i], vmulq_f32(f, t));
            }
        }
    }
    unpack_outputs(&yv)
}

/// `tile_outputs` for NT inputs over one row block of a matrix without sub-scales, where a
/// super-block is one group: the same operations in the same order, but each group's scales
/// are converted (six operations per four) once for all NT inputs and no super-block sums are
/// kept. AFFINE: the zero is `Zero::Affine`, else an offset.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // one input index reads several arrays
unsafe fn flat_outputs<const NT: usize, const AFFINE: bool>(
    m: &LutMatrix,
    g: &Geometry,
    rb: usize,
    gis: [&[GroupInput]; NT],
    mut ints: impl FnMut(usize) -> [[int32x4_t; 4]; NT],
) -> [[f32; 16]; NT] {
    debug_assert!(m.sup.is_none() && AFFINE == (m.zero == Zero::Affine));
    let offset = match m.zero {
        Zero::Offset(o) => o as i32,
        Zero::Affine => 0,
    };
    let mut yv = [[vdupq_n_f32(0.0); 4]; NT];
    for grp in 0..g.groups {
        let acc = ints(grp);
        // SAFETY: the scales of (rb, grp) are in bounds (checked at validation): 32 bytes of
        // d, then 32 of m if affine.
        let hp = m.scales.as_slice().as_ptr().add(g.head(rb, grp));
        let (mut d, mut mn) = ([vdupq_n_f32(0.0); 4], [vdupq_n_f32(0.0); 4]);
        for i in 0..4 {
            d[i] = f16x4_to_f32(hp.add(8 * i));
            if AFFINE {
                mn[i] = f16x4_to_f32(hp.add(32 + 8 * i));
            }
        }
        for t in 0..NT {
            let gi = gis[t][grp];
            let f = vdupq_n_f32(gi.f);
            for i in 0..4 {
                let tv = if AFFINE {
                    let b = vcvtq_f32_s32(vdupq_n_s32(gi.s));
                    vaddq_f32(
                        vmulq_f32(d[i], vcvtq_f32_s32(acc[t][i])),
                        vmulq_f32(mn[i], b),
                    )
                } else {
                    let b = vdupq_n_s32(offset * gi.s);
                    vmulq_f32(d[i], vcvtq_f32_s32(vsubq_s32(acc[t][i], b)))
                };
                yv[t][i] = vaddq_f32(yv[t][i], vmulq_f32(f, tv));
            }
        }
    }
    unpack_outputs(&yv)
}

/// Each row block's 16 float accumulators as an array.
#[inline(always)]
unsafe fn unpack_outputs<const RB: usize>(yv: &[[float32x4_t; 4]; RB]) -> [[f32; 16]; RB] {
    let mut out = [[0f32; 16]; RB];
    for (o, v) in out.iter_mut().zip(yv) {
        for (i, v) in v.iter().enumerate() {
            // SAFETY: o holds 16 floats, v's four vectors 4 each.
            vst1q_f32(o.as_mut_ptr().add(4 * i), *v);
        }
    }
    out
}

/// `lut_gemv` with the kind of tables and of scales fixed, in tiles of `knobs.row_tile` row
/// blocks.
#[target_feature(enable = "neon")]
unsafe fn lut_gemv_kind<const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &super::Knobs,
) {
    let g = m.geometry();
    debug_assert!(m.scales.len() >= g.scales_len() && y.len() >= m.rows);
    let gis = GroupInput::all(act, m.group, g.groups);
    for (rb, n) in super::row_tiles(rbs, knobs.row_tile) {
        match n {
            2 => lut_tile::<2, I8, SUB>(m, &g, act, &gis, rb, knobs.prefetch, y),
            _ => lut_tile::<1, I8, SUB>(m, &g, act, &gis, rb, knobs.prefetch, y),
        }
    }
}

/// y = W x for a LUT matrix, row blocks `rbs` (see scalar::lut_gemv for the semantics).
///
/// # Safety
/// NEON must be available; `act` must have its tables built for this matrix's width.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn lut_gemv(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &super::Knobs,
) {
    match (act.tables_built() == Some(Tables::Int8), m.sup.is_some()) {
        (false, false) => lut_gemv_kind::<false, false>(m, act, y, rbs, knobs),
        (false, true) => lut_gemv_kind::<false, true>(m, act, y, rbs, knobs),
        (true, false) => lut_gemv_kind::<true, false>(m, act, y, rbs, knobs),
        (true, true) => lut_gemv_kind::<true, true>(m, act, y, rbs, knobs),
    }
}

/// acc lane i += sum of a[4i..4i+4] * b[4i..4i+4] (sdot, accumulating).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_acc(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = acc;
    // SAFETY: sdot only reads and writes the registers given; dotprod is enabled for this fn.
    asm!("sdot {r:v}.4s, {a:v}.16b, {b:v}.16b", r = inout(vreg) r, a = in(vreg) a, b = in(vreg) b,
         options(pure, nomem, nostack));
    r
}

/// Unpack row block `rb` of a BITS-bit matrix into a code tile (scalar::unpack_tile), as
/// avx2::unpack_tile does: `tbl` repeats each row's plane byte 4 times, a mask picks column l's
/// bit, and the planes, highest first, fold in as code = 2 code + bit.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn unpack_tile<const BITS: usize>(data: &[u8], g: &Geometry, rb: usize, tile: &mut [u8]) {
    let quads = 2 * g.chunks;
    let pairs = BITS / 2;
    debug_assert!(BITS == g.bits);
    debug_assert!(data.len() >= (rb + 1) * g.chunks * g.chunk_bytes);
    debug_assert!(tile.len() >= super::scalar::tile_len(g));
    // byte 4 r + l of quarter L (row 4 L + r of the half) <- plane byte `from(row)`
    let spread = |from: &dyn Fn(u8) -> u8| {
        [0u8, 1].map(|l4| {
            let b: [u8; 16] = std::array::from_fn(|i| from(4 * l4 + (i / 4) as u8));
            vld1q_u8(b.as_ptr())
        })
    };
    let (even, odd) = (spread(&|r| 2 * r), spread(&|r| 2 * r + 1));
    let lone = [spread(&|r| r), spread(&|r| 8 + r)];
    let masks = [
        vreinterpretq_u8_u32(vdupq_n_u32(0x0804_0201)),
        vreinterpretq_u8_u32(vdupq_n_u32(0x8040_2010)),
    ];
    for c in 0..g.chunks {
        // SAFETY: chunk (rb, c) and the tile's quads 2c, 2c+1 are in bounds (debug-asserted
        // above; the dispatch checks the matrix, the caller sizes the tile).
        let blk = data.as_ptr().add((rb * g.chunks + c) * 16 * BITS);
        for (h, lone) in lone.iter().enumerate() {
            let mut code = [[vdupq_n_u8(0); 2]; 2];
            let mut fold = |v: uint8x16_t, idx: &[uint8x16_t; 2]| {
                for (code, mask) in code.iter_mut().zip(masks) {
                    for (code, idx) in code.iter_mut().zip(idx) {
                        let b = vqtbl1q_u8(v, *idx);
                        let bit = vceqq_u8(vandq_u8(b, mask), mask);
                        *code = vsubq_u8(vaddq_u8(*code, *code), bit);
                    }
                }
            };
            if BITS % 2 == 1 {
                fold(vld1q_u8(blk.add(pairs * 32)), lone);
            }
            for pp in (0..pairs).rev() {
                let v = vld1q_u8(blk.add(pp * 32 + 16 * h));
                fold(v, &odd);
                fold(v, &even);
            }
            for (n, code) in code.iter().enumerate() {
                let at = tile.as_mut_ptr().add((h * quads + 2 * c + n) * 32);
                vst1q_u8(at, code[0]);
                vst1q_u8(at.add(16), code[1]);
            }
        }
    }
}

/// Sums of q * a over quads k0..k1 of a code tile for NT inputs at once, each weight vector
/// loaded once for all of them: sdot of 4 rows x 4 codes with 4 broadcast activations, each
/// row in its own lane, accumulated in 32 bits.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_group_ints<const NT: usize>(
    tile: &[u8],
    quads: usize,
    a: [&[i8]; NT],
    (k0, k1): (usize, usize),
) -> [[int32x4_t; 4]; NT] {
    debug_assert!(tile.len() >= (quads + k1) * 32 && a.iter().all(|a| a.len() >= 4 * k1));
    let mut acc = [[vdupq_n_s32(0); 4]; NT];
    let p = tile.as_ptr() as *const i8;
    for kk in k0..k1 {
        // SAFETY: quads kk of both halves and activations 4kk..4kk+3 are in bounds
        // (debug-asserted above; the dispatch checks the widths).
        let w = [
            vld1q_s8(p.add(kk * 32)),
            vld1q_s8(p.add(kk * 32 + 16)),
            vld1q_s8(p.add((quads + kk) * 32)),
            vld1q_s8(p.add((quads + kk) * 32 + 16)),
        ];
        for (acc, a) in acc.iter_mut().zip(a) {
            let x = (a.as_ptr().add(4 * kk) as *const i32).read_unaligned();
            let x = vreinterpretq_s8_s32(vdupq_n_s32(x));
            for (acc, w) in acc.iter_mut().zip(w) {
                *acc = sdot_acc(*acc, w, x);
            }
        }
    }
    acc
}

/// The quads of group `grp`.
fn group_quads(g: &Geometry, grp: usize) -> (usize, usize) {
    let k0 = 2 * grp * g.group_chunks;
    (k0, (k0 + 2 * g.group_chunks).min(2 * g.chunks))
}

/// Inputs t0..t0 + NT over the code tile of row block `rb`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_inputs<const NT: usize, const SUB: bool>(
    m: &LutMatrix,
    g: &Geometry,
    tile: &[u8],
    rb: usize,
    acts: &[Activations],
    gis: &[Vec<GroupInput>],
    t0: usize,
    ys: &mut [f32],
) {
    // plain loops: an array::from_fn closure here is not inlined into the kernel
    let (mut a, mut gs): ([&[i8]; NT], [&[GroupInput]; NT]) = ([&[]; NT], [&[]; NT]);
    for t in 0..NT {
        (a[t], gs[t]) = (&acts[t0 + t].a, &gis[t0 + t]);
    }
    let quads = 2 * g.chunks;
    let ints = |grp| tile_group_ints::<NT>(tile, quads, a, group_quads(g, grp));
    let out = match (SUB, m.zero) {
        (true, _) => tile_outputs::<NT, false, SUB>(m, g, [rb; NT], gs, ints),
        (false, Zero::Affine) => flat_outputs::<NT, true>(m, g, rb, gs, ints),
        (false, Zero::Offset(_)) => flat_outputs::<NT, false>(m, g, rb, gs, ints),
    };
    for (t, y16) in out.iter().enumerate() {
        store_row_block(m, rb, y16, &mut ys[(t0 + t) * m.rows..][..m.rows]);
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn gemm_bits<const BITS: usize, const SUB: bool>(
    m: &LutMatrix,
    acts: &[Activations],
    ys: &mut [f32],
) {
    let g = m.geometry();
    let gis: Vec<Vec<GroupInput>> = acts
        .iter()
        .map(|a| GroupInput::all(a, m.group, g.groups))
        .collect();
    let mut tile = vec![0u8; super::scalar::tile_len(&g)];
    for rb in 0..g.row_blocks {
        unpack_tile::<BITS>(m.data.as_slice(), &g, rb, &mut tile);
        let mut t = 0;
        while t + 4 <= acts.len() {
            gemm_inputs::<4, SUB>(m, &g, &tile, rb, acts, &gis, t, ys);
            t += 4;
        }
        match acts.len() - t {
            3 => gemm_inputs::<3, SUB>(m, &g, &tile, rb, acts, &gis, t, ys),
            2 => gemm_inputs::<2, SUB>(m, &g, &tile, rb, acts, &gis, t, ys),
            1 => gemm_inputs::<1, SUB>(m, &g, &tile, rb, acts, &gis, t, ys),
            _ => {}
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn gemm_sub<const SUB: bool>(m: &LutMatrix, acts: &[Activations], ys: &mut [f32]) {
    match m.bits {
        1 => gemm_bits::<1, SUB>(m, acts, ys),
        2 => gemm_bits::<2, SUB>(m, acts, ys),
        3 => gemm_bits::<3, SUB>(m, acts, ys),
        4 => gemm_bits::<4, SUB>(m, acts, ys),
        5 => gemm_bits::<5, SUB>(m, acts, ys),
        _ => gemm_bits::<6, SUB>(m, acts, ys),
    }
}

/// Y = W X for inputs quantized without tables (scalar::lut_gemm): every row block unpacked
/// once into a code tile, then sdot with every input, four at a time.
///
/// # Safety
/// NEON and dotprod must be available (`has_dotprod`); the matrix's bytes must match its
/// shape, every input must be at least as wide as its padded columns and `ys` hold `m.rows`
/// outputs per input.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn lut_gemm(m: &LutMatrix, acts: &[Activations], ys: &mut [f32]) {
    match m.sup.is_some() {
        false => gemm_sub::<false>(m, acts, ys),
        true => gemm_sub::<true>(m, acts, ys),
    }
}

/// The batched kernel's integer sums for one input, `[row block][group][16]` (for tests).
///
/// # Safety
/// As `lut_gemm`.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn tile_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    let g = m.geometry();
    let mut tile = vec![0u8; super::scalar::tile_len(&g)];
    out.clear();
    for rb in 0..g.row_blocks {
        let d = m.data.as_slice();
        match m.bits {
            1 => unpack_tile::<1>(d, &g, rb, &mut tile),
            2 => unpack_tile::<2>(d, &g, rb, &mut tile),
            3 => unpack_tile::<3>(d, &g, rb, &mut tile),
            4 => unpack_tile::<4>(d, &g, rb, &mut tile),
            5 => unpack_tile::<5>(d, &g, rb, &mut tile),
            _ => unpack_tile::<6>(d, &g, rb, &mut tile),
        }
        for grp in 0..g.groups {
            let [acc] = tile_group_ints::<1>(&tile, 2 * g.chunks, [&act.a], group_quads(&g, grp));
            let mut v = [0i32; 16];
            for (i, a) in acc.iter().enumerate() {
                // SAFETY: v has room for 16 i32.
                vst1q_s32(v.as_mut_ptr().add(4 * i), *a);
            }
            out.extend_from_slice(&v);
        }
    }
}

/// Lane i = sum of a[4i..4i+4] * b[4i..4i+4] (the sdot instruction).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot4_sdot(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = vdupq_n_s32(0);
    // SAFETY: sdot only reads and writes the registers given; dotprod is enabled for this fn.
    asm!("sdot {r:v}.4s, {a:v}.16b, {b:v}.16b", r = inout(vreg) r, a = in(vreg) a, b = in(vreg) b,
         options(pure, nomem, nostack));
    r
}

/// The same lane sums without dotprod.
#[inline(always)]
unsafe fn dot4_mull(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let q = vmull_high_s8(a, b);
    vpaddq_s32(vpaddlq_s16(p), vpaddlq_s16(q))
}

pub(crate) fn has_dotprod() -> bool {
    static DOT: OnceLock<bool> = OnceLock::new();
    *DOT.get_or_init(|| std::arch::is_aarch64_feature_detected!("dotprod"))
}

/// Lanes 0-3 and 4-7 summed in scalar::reduce8's order.
#[inline(always)]
unsafe fn reduce8(acc0: float32x4_t, acc1: float32x4_t) -> f32 {
    let h = vaddq_f32(acc0, acc1);
    let v = vaddq_f32(h, vextq_f32(h, h, 2));
    vgetq_lane_f32(v, 0) + vgetq_lane_f32(v, 1)
}

/// One row of an 8-bit GEMV.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn q8_row(
    q: *const u8,
    d: *const u8,
    st: Q8Strides,
    first_block: usize,
    act: &Activations,
    block_scales: &[f32],
    dot: impl Fn(int8x16_t, int8x16_t) -> int32x4_t,
) -> f32 {
    let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for (b, &fa) in block_scales.iter().enumerate() {
        let i = first_block + b;
        // SAFETY: block i's values and scale and activations 32b..32b+32 are in bounds (the
        // caller checked the sizes).
        let dp = d.add(i * st.d_stride);
        let sc = vdupq_n_f32(half::f16::from_le_bytes([*dp, *dp.add(1)]).to_f32() * fa);
        let qs = q.add(i * st.q_stride + st.q_skip) as *const i8;
        let a = act.a.as_ptr().add(b * Q8_BLOCK);
        let s0 = dot(vld1q_s8(qs), vld1q_s8(a));
        let s1 = dot(vld1q_s8(qs.add(16)), vld1q_s8(a.add(16)));
        acc0 = vaddq_f32(acc0, vmulq_f32(vcvtq_f32_s32(s0), sc));
        acc1 = vaddq_f32(acc1, vmulq_f32(vcvtq_f32_s32(s1), sc));
    }
    reduce8(acc0, acc1)
}

/// y = W x for an 8-bit matrix (see scalar::q8_gemv for the semantics).
///
/// # Safety
/// NEON must be available; `act` must cover the matrix's columns.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn q8_gemv(m: &Q8Matrix, act: &Activations, y: &mut [f32], knobs: &super::Knobs) {
    match has_dotprod() {
        true => q8_gemv_sdot(m, act, y, knobs),
        false => q8_gemv_with(m, act, y, knobs, |a, b| dot4_mull(a, b)),
    }
}

/// `q8_gemv` with sdot inlined (the dot product passed as a pointer cost a call per 16 bytes).
#[target_feature(enable = "neon,dotprod")]
unsafe fn q8_gemv_sdot(m: &Q8Matrix, act: &Activations, y: &mut [f32], knobs: &super::Knobs) {
    q8_gemv_with(m, act, y, knobs, |a, b| dot4_sdot(a, b))
}

#[inline(always)]
unsafe fn q8_gemv_with(
    m: &Q8Matrix,
    act: &Activations,
    y: &mut [f32],
    knobs: &super::Knobs,
    dot: impl Fn(int8x16_t, int8x16_t) -> int32x4_t + Copy,
) {
    let (q, d) = m.parts();
    let st = m.strides();
    let nb = m.cols / Q8_BLOCK;
    debug_assert!(q.len() >= m.rows * nb * st.q_stride && act.a.len() >= m.cols);
    let block_scales = act.block_scales(Q8_BLOCK, nb);
    for (r, yr) in y.iter_mut().enumerate().take(m.rows) {
        prefetch(
            q.as_ptr()
                .wrapping_add(r * nb * st.q_stride + knobs.prefetch),
        );
        *yr = q8_row(q.as_ptr(), d.as_ptr(), st, r * nb, act, &block_scales, dot);
    }
}

/// The 8 rows of row group g of a codebook GEMV (see avx2::iq4_rows): per step, rows 0-3 and
/// 4-7 each get 8 codes from 16 bytes, `tbl` turns them into int8 weights, and sdot (or smull)
/// against 4 broadcast activations sums them in each row's lane, times the group's scale.
#[inline(always)]
unsafe fn iq4_rows(
    m: &Iq4Matrix,
    act: &Activations,
    fs: &[f32],
    g: usize,
    ahead: usize,
    dot: impl Fn(int8x16_t, int8x16_t) -> int32x4_t,
) -> [float32x4_t; 2] {
    let (bl, subs) = (m.block(), m.subs());
    let xs = m.typ == crate::layout::ggml::GgmlType::IQ4XS;
    let book = vld1q_s8(IQ4_CODEBOOK.as_ptr());
    let (tb, codes) = (m.tile_bytes(), m.codes_offset(0, 0));
    let tiles = m.data.as_slice()[g * fs.len() * tb..][..fs.len() * tb].as_ptr();
    let mut acc = [vdupq_n_f32(0.0); 2];
    for (b, &fa) in fs.iter().enumerate() {
        // SAFETY: row group g has fs.len() tiles of tb bytes (sliced above).
        let tp = tiles.add(b * tb);
        let ap = act.a.as_ptr().add(b * bl);
        // every cache line of the tile, as avx2::iq4_rows does
        for o in (0..tb).step_by(64) {
            prefetch(tp.wrapping_add(ahead + o));
        }
        let mut li = [vdupq_n_s32(0); 2];
        for s in 0..subs {
            let mut p = [vdupq_n_s32(0); 2];
            for j in 0..4 {
                // SAFETY: the tile's 4 steps of 32 code bytes per group from `codes` and the
                // block's activations are in bounds (the tile size was checked at load; the
                // dispatch checked the activations).
                let a4 = |o: usize| {
                    vreinterpretq_s8_s32(vdupq_n_s32((ap.add(o) as *const i32).read_unaligned()))
                };
                let (al, ah) = (a4(32 * s + 4 * j), a4(32 * s + 16 + 4 * j));
                for (h, p) in p.iter_mut().enumerate() {
                    let w = vld1q_u8(tp.add(codes + (4 * s + j) * 32 + 16 * h));
                    let wl = vqtbl1q_s8(book, vandq_u8(w, vdupq_n_u8(0x0F)));
                    let wh = vqtbl1q_s8(book, vshrq_n_u8(w, 4));
                    *p = vaddq_s32(*p, vaddq_s32(dot(wl, al), dot(wh, ah)));
                }
            }
            for (h, li) in li.iter_mut().enumerate() {
                *li = match xs {
                    true => {
                        // SAFETY: an IQ4_XS tile holds 8 scale bytes per group after the 8 d.
                        let sc = tp.add(16 + 8 * s + 4 * h) as *const i8;
                        let k: [i32; 4] = std::array::from_fn(|i| *sc.add(i) as i32);
                        vmlaq_s32(*li, p[h], vld1q_s32(k.as_ptr()))
                    }
                    false => vaddq_s32(*li, p[h]),
                };
            }
        }
        for (h, acc) in acc.iter_mut().enumerate() {
            let d = vmulq_f32(f16x4_to_f32(tp.add(8 * h)), vdupq_n_f32(fa));
            *acc = vaddq_f32(*acc, vmulq_f32(vcvtq_f32_s32(li[h]), d));
        }
    }
    acc
}

/// y = W x for a codebook matrix (see scalar::iq4_gemv for the semantics).
///
/// # Safety
/// NEON must be available; `act` must cover the matrix's columns.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn iq4_gemv(
    m: &Iq4Matrix,
    act: &Activations,
    y: &mut [f32],
    knobs: &super::Knobs,
) {
    match has_dotprod() {
        true => iq4_gemv_sdot(m, act, y, knobs),
        false => iq4_gemv_with(m, act, y, knobs, |a, b| dot4_mull(a, b)),
    }
}

/// `iq4_gemv` with sdot inlined.
#[target_feature(enable = "neon,dotprod")]
unsafe fn iq4_gemv_sdot(m: &Iq4Matrix, act: &Activations, y: &mut [f32], knobs: &super::Knobs) {
    iq4_gemv_with(m, act, y, knobs, |a, b| dot4_sdot(a, b))
}

#[inline(always)]
unsafe fn iq4_gemv_with(
    m: &Iq4Matrix,
    act: &Activations,
    y: &mut [f32],
    knobs: &super::Knobs,
    dot: impl Fn(int8x16_t, int8x16_t) -> int32x4_t + Copy,
) {
    debug_assert!(act.a.len() >= m.cols && y.len() >= m.rows);
    let fs = act.block_scales(m.block(), m.cols / m.block());
    for g in 0..m.row_groups() {
        let v = iq4_rows(m, act, &fs, g, knobs.prefetch, dot);
        let mut y8 = [0f32; 8];
        vst1q_f32(y8.as_mut_ptr(), v[0]);
        vst1q_f32(y8.as_mut_ptr().add(4), v[1]);
        let r0 = g * 8;
        let n = (m.rows - r0).min(8);
        y[r0..r0 + n].copy_from_slice(&y8[..n]);
    }
}
