//! AVX2 kernels (x86-64 with AVX2 and F16C). Same integer results and the same float operation
//! order as `scalar.rs`; `tests/kernels.rs` checks it on random shapes.
//!
//! LUT GEMV inner step, per 32 bytes of weights (16 rows x 2 bit-planes x 8 columns):
//! split the nibbles into two index vectors (columns 0-3 and 4-7), look up the low and the high
//! bytes of the two tables with vpshufb, and let vpmaddubsw both pair each row's two planes and
//! weight them by 2^plane. The lone plane of an odd code width (16 bytes, one per row) is looked
//! up for two row blocks at once, one per lane; vpunpck{l,h}bw puts each row's two entries
//! (columns 0-3, 4-7) side by side and vpmaddubsw adds them, weighted by 2^plane: half the
//! shuffle-port work of a row block alone, which widens its 128-bit lookups to 16 bits and
//! shifts them. Low-byte sums are unsigned and accumulate in 16 bits (wrapping, read back
//! unsigned) until they are widened; high-byte sums are small and signed.
//!
//! With int8 tables (the `tables` knob) each table is one 16-byte vector: one vpshufb per
//! index vector, vpmaddubsw with the plane weights as the unsigned operand, signed 16-bit sums.

use super::lut::{Activations, Tables, TABLE8_BYTES, TABLE_BYTES};
use super::scalar::GroupInput;
use crate::layout::blocks::IQ4_CODEBOOK;
use crate::layout::iq4::Iq4Matrix;
use crate::layout::lut::{Geometry, LutMatrix, Zero};
use crate::layout::q8::{Q8Matrix, Q8_BLOCK};
use std::arch::x86_64::*;

/// Integer sums of one scale group for RB row blocks starting at `rb0`, each as (rows 0-7,
/// rows 8-15). BITS is the code width (2: 2-bit and ternary). The RB row blocks share each
/// table load. I8: the tables are int8 (sums in table units), else exact.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn group_ints<const BITS: usize, const RB: usize, const I8: bool>(
    data: &[u8],
    g: &Geometry,
    tables: &[u8],
    rb0: usize,
    grp: usize,
    prefetch: usize,
) -> [[__m256i; 2]; RB] {
    let c0 = grp * g.group_chunks;
    let c1 = (c0 + g.group_chunks).min(g.chunks);
    let (pairs, lone) = (BITS / 2, BITS % 2 == 1);
    let (table_bytes, flush) = if I8 {
        (TABLE8_BYTES, super::lut::flush_chunks8(BITS))
    } else {
        (TABLE_BYTES, super::lut::flush_chunks(BITS))
    };
    debug_assert!(BITS == g.bits);
    debug_assert!(data.len() >= ((rb0 + RB - 1) * g.chunks + c1) * g.chunk_bytes);
    debug_assert!(tables.len() >= 2 * c1 * table_bytes);
    let mask = _mm256_set1_epi8(0x0F);
    // per plane pair: byte weights 2^plane for (even, odd) bytes
    let coef = [
        _mm256_set1_epi16(0x0201),
        _mm256_set1_epi16(0x0804),
        _mm256_set1_epi16(0x2010),
    ];
    let lone_shift = _mm_cvtsi32_si128(2 * pairs as i32);
    let lone_coef = _mm256_set1_epi8(1 << (2 * pairs));
    // the lone plane of row blocks 2p and 2p + 1 together (the last block of an odd RB alone)
    let duo = if lone { RB / 2 } else { 0 };
    let mut acc = [[_mm256_setzero_si256(); 2]; RB];
    let (wp, tp) = (data.as_ptr(), tables.as_ptr());
    let mut c = c0;
    while c < c1 {
        let cend = (c + flush).min(c1);
        // exact: low-byte sums (unsigned) and high-byte sums; int8: the sums, in slo
        let mut slo = [_mm256_setzero_si256(); RB];
        let mut shi = [_mm256_setzero_si256(); RB];
        // lone-plane sums of row-block pairs: [p][rows 0-7, rows 8-15], lane l holding block
        // 2p + l; low and high bytes as slo and shi
        let mut dlo = [[_mm256_setzero_si256(); 2]; RB];
        let mut dhi = [[_mm256_setzero_si256(); 2]; RB];
        for cc in c..cend {
            // SAFETY: tables 2cc, 2cc+1 and weight blocks (rb, cc, pp) are in bounds
            // (debug-asserted above; guaranteed by LutMatrix::validate and build_tables). The
            // prefetch address may run past the end; it is never dereferenced.
            let t = tp.add(2 * cc * table_bytes);
            // each 16-byte table (exact: half-table) broadcast to both lanes
            let bcast = |o: usize| _mm256_broadcastsi128_si256(_mm_loadu_si128(t.add(o) as _));
            let (tl0, tl1) = (bcast(0), bcast(table_bytes));
            let (th0, th1) = if I8 {
                (tl0, tl1)
            } else {
                (bcast(16), bcast(48))
            };
            for r in 0..RB {
                let blk = wp.add(((rb0 + r) * g.chunks + cc) * 16 * BITS);
                _mm_prefetch::<_MM_HINT_T1>(blk.wrapping_add(prefetch) as *const i8);
                for (pp, &cf) in coef.iter().enumerate().take(pairs) {
                    let w = _mm256_loadu_si256(blk.add(pp * 32) as *const __m256i);
                    let i0 = _mm256_and_si256(w, mask);
                    let i1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), mask);
                    // signed bytes (int8 entries, exact high bytes) go second to vpmaddubsw
                    let signed = |t0, t1| {
                        _mm256_add_epi16(
                            _mm256_maddubs_epi16(cf, _mm256_shuffle_epi8(t0, i0)),
                            _mm256_maddubs_epi16(cf, _mm256_shuffle_epi8(t1, i1)),
                        )
                    };
                    if I8 {
                        slo[r] = _mm256_add_epi16(slo[r], signed(tl0, tl1));
                        continue;
                    }
                    let lo = _mm256_add_epi16(
                        _mm256_maddubs_epi16(_mm256_shuffle_epi8(tl0, i0), cf),
                        _mm256_maddubs_epi16(_mm256_shuffle_epi8(tl1, i1), cf),
                    );
                    slo[r] = _mm256_add_epi16(slo[r], lo);
                    shi[r] = _mm256_add_epi16(shi[r], signed(th0, th1));
                }
                if lone && r >= 2 * duo {
                    // byte j is row j: widened, rows 0-7 land in lane 0 and 8-15 in lane 1,
                    // where the plane pairs put them
                    let w = _mm_loadu_si128(blk.add(pairs * 32) as *const __m128i);
                    let i0 = _mm_and_si128(w, _mm256_castsi256_si128(mask));
                    let i1 = _mm_and_si128(_mm_srli_epi16(w, 4), _mm256_castsi256_si128(mask));
                    let look =
                        |t: __m256i, i: __m128i| _mm_shuffle_epi8(_mm256_castsi256_si128(t), i);
                    let hi = _mm256_add_epi16(
                        _mm256_cvtepi8_epi16(look(th0, i0)),
                        _mm256_cvtepi8_epi16(look(th1, i1)),
                    );
                    if I8 {
                        slo[r] = _mm256_add_epi16(slo[r], _mm256_sll_epi16(hi, lone_shift));
                        continue;
                    }
                    let lo = _mm256_add_epi16(
                        _mm256_cvtepu8_epi16(look(tl0, i0)),
                        _mm256_cvtepu8_epi16(look(tl1, i1)),
                    );
                    slo[r] = _mm256_add_epi16(slo[r], _mm256_sll_epi16(lo, lone_shift));
                    shi[r] = _mm256_add_epi16(shi[r], _mm256_sll_epi16(hi, lone_shift));
                }
            }
            for p in 0..duo {
                // SAFETY: the lone planes of blocks (rb0 + 2p, cc) and (rb0 + 2p + 1, cc) are
                // in bounds, as above
                let blk = |r: usize| wp.add(((rb0 + r) * g.chunks + cc) * 16 * BITS + pairs * 32);
                let w = _mm256_loadu2_m128i(blk(2 * p + 1) as _, blk(2 * p) as _);
                lone_pair::<I8>(w, [tl0, tl1, th0, th1], lone_coef, &mut dlo[p], &mut dhi[p]);
            }
        }
        for p in 0..duo {
            let [(l0, h0), (l1, h1)] = lone_blocks::<I8>(dlo[p], dhi[p]);
            slo[2 * p] = _mm256_add_epi16(slo[2 * p], l0);
            slo[2 * p + 1] = _mm256_add_epi16(slo[2 * p + 1], l1);
            shi[2 * p] = _mm256_add_epi16(shi[2 * p], h0);
            shi[2 * p + 1] = _mm256_add_epi16(shi[2 * p + 1], h1);
        }
        // exact: value = low sum (unsigned 16-bit) + 256 * high sum (signed 16-bit);
        // int8: the signed 16-bit sum
        for ((a, lo), hi) in acc.iter_mut().zip(slo).zip(shi) {
            for (h, a) in a.iter_mut().enumerate() {
                let half = |v: __m256i| match h {
                    0 => _mm256_castsi256_si128(v),
                    _ => _mm256_extracti128_si256(v, 1),
                };
                let v = if I8 {
                    _mm256_cvtepi16_epi32(half(lo))
                } else {
                    let hi = _mm256_slli_epi32(_mm256_cvtepi16_epi32(half(hi)), 8);
                    _mm256_add_epi32(_mm256_cvtepu16_epi32(half(lo)), hi)
                };
                *a = _mm256_add_epi32(*a, v);
            }
        }
        c = cend;
    }
    acc
}

/// One chunk of the lone plane of two row blocks, `w` = (block a's 16 bytes, block b's), one
/// per lane, looked up in `t` (low tables 0 and 1, high tables 0 and 1; int8: the tables
/// twice): each row's two entries (columns 0-3, 4-7) side by side by vpunpck{l,h}bw, added
/// and weighted by `coef` = 2^plane by vpmaddubsw, onto `lo`, `hi` = (rows 0-7, rows 8-15),
/// lane 0 block a's and lane 1 block b's. Int8 sums go to `hi`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lone_pair<const I8: bool>(
    w: __m256i,
    t: [__m256i; 4],
    coef: __m256i,
    lo: &mut [__m256i; 2],
    hi: &mut [__m256i; 2],
) {
    let mask = _mm256_set1_epi8(0x0F);
    let i0 = _mm256_and_si256(w, mask);
    let i1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), mask);
    // signed bytes (int8 entries, exact high bytes) go second to vpmaddubsw
    let rows = |t0, t1, signed: bool| {
        let (e0, e1) = (_mm256_shuffle_epi8(t0, i0), _mm256_shuffle_epi8(t1, i1));
        [_mm256_unpacklo_epi8(e0, e1), _mm256_unpackhi_epi8(e0, e1)].map(|e| match signed {
            true => _mm256_maddubs_epi16(coef, e),
            false => _mm256_maddubs_epi16(e, coef),
        })
    };
    let h = rows(t[2], t[3], true);
    for k in 0..2 {
        hi[k] = _mm256_add_epi16(hi[k], h[k]);
    }
    if !I8 {
        let l = rows(t[0], t[1], false);
        for k in 0..2 {
            lo[k] = _mm256_add_epi16(lo[k], l[k]);
        }
    }
}

/// `lone_pair`'s sums as each block's (low, high) 16-bit sums (rows 0-7, rows 8-15), the
/// layout of the plane pairs' sums; int8: (sums, 0).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lone_blocks<const I8: bool>(
    [a, b]: [__m256i; 2],
    [e, f]: [__m256i; 2],
) -> [(__m256i, __m256i); 2] {
    let (lo, hi) = match I8 {
        true => ((e, f), (_mm256_setzero_si256(), _mm256_setzero_si256())),
        false => ((a, b), (e, f)),
    };
    [
        (
            _mm256_permute2x128_si256::<0x20>(lo.0, lo.1),
            _mm256_permute2x128_si256::<0x20>(hi.0, hi.1),
        ),
        (
            _mm256_permute2x128_si256::<0x31>(lo.0, lo.1),
            _mm256_permute2x128_si256::<0x31>(hi.0, hi.1),
        ),
    ]
}

/// The integer sums of one group with the tables `act` holds (for `lut_ints`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn ints<const BITS: usize, const RB: usize>(
    data: &[u8],
    g: &Geometry,
    act: &Activations,
    rb0: usize,
    grp: usize,
    prefetch: usize,
) -> [[__m256i; 2]; RB] {
    let t = &act.tables;
    match act.tables_built() {
        Some(Tables::Int8) => group_ints::<BITS, RB, true>(data, g, t, rb0, grp, prefetch),
        _ => group_ints::<BITS, RB, false>(data, g, t, rb0, grp, prefetch),
    }
}

/// All integer accumulators, laid out `[row block][group][16]` (for tests). Row blocks go in
/// pairs, as the GEMV's row tile of 2 reads them, the last of an odd count alone.
///
/// # Safety
/// AVX2 must be available; `act` must have its tables built for this matrix's width.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn lut_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    let g = m.geometry();
    let d = m.data.as_slice();
    out.clear();
    out.resize(g.row_blocks * g.groups * 16, 0);
    for (rb, n) in super::row_tiles(0..g.row_blocks, 2) {
        for grp in 0..g.groups {
            let ints: &[[__m256i; 2]] = match (m.bits, n) {
                (1, 2) => &ints::<1, 2>(d, &g, act, rb, grp, 0),
                (2, 2) => &ints::<2, 2>(d, &g, act, rb, grp, 0),
                (3, 2) => &ints::<3, 2>(d, &g, act, rb, grp, 0),
                (4, 2) => &ints::<4, 2>(d, &g, act, rb, grp, 0),
                (5, 2) => &ints::<5, 2>(d, &g, act, rb, grp, 0),
                (_, 2) => &ints::<6, 2>(d, &g, act, rb, grp, 0),
                (1, _) => &ints::<1, 1>(d, &g, act, rb, grp, 0),
                (2, _) => &ints::<2, 1>(d, &g, act, rb, grp, 0),
                (3, _) => &ints::<3, 1>(d, &g, act, rb, grp, 0),
                (4, _) => &ints::<4, 1>(d, &g, act, rb, grp, 0),
                (5, _) => &ints::<5, 1>(d, &g, act, rb, grp, 0),
                _ => &ints::<6, 1>(d, &g, act, rb, grp, 0),
            };
            for (r, [a, b]) in ints.iter().enumerate() {
                let v = &mut out[((rb + r) * g.groups + grp) * 16..][..16];
                // SAFETY: v has room for 16 i32.
                _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, *a);
                _mm256_storeu_si256(v.as_mut_ptr().add(8) as *mut __m256i, *b);
            }
        }
    }
}

/// A super-block's integer sums for one row block (see scalar::SuperInts), rows 0-7 and 8-15.
#[derive(Clone, Copy)]
struct SuperInts {
    a: [__m256i; 2],
    b: [__m256i; 2],
}

/// Add one group's integer sums to its super-block's (scalar::add_group). SUB: the matrix has
/// sub-scales at `sp` (16 sc, then 16 mn if affine); else sc = mn = 1.
#[inline]
#[target_feature(enable = "avx2")]
#[allow(clippy::needless_range_loop)] // one row index reads several arrays
unsafe fn add_group<const SUB: bool>(
    si: &mut SuperInts,
    acc: [__m256i; 2],
    sp: *const u8,
    zero: Zero,
    s: i32,
) {
    let sv = match zero {
        Zero::Offset(o) => _mm256_set1_epi32(o as i32 * s),
        Zero::Affine => _mm256_set1_epi32(s),
    };
    for h in 0..2 {
        if !SUB {
            // a super-block is this one group: its sums are the group's
            si.a[h] = acc[h];
            si.b[h] = sv;
            continue;
        }
        // SAFETY: the caller passes the sub-scales of this (row block, group): 16 or 32 bytes.
        let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(sp.add(8 * h) as *const __m128i));
        si.a[h] = _mm256_add_epi32(si.a[h], _mm256_mullo_epi32(sc, acc[h]));
        let k = match zero {
            Zero::Offset(_) => sc,
            Zero::Affine => {
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(sp.add(16 + 8 * h) as *const __m128i))
            }
        };
        si.b[h] = _mm256_add_epi32(si.b[h], _mm256_mullo_epi32(k, sv));
    }
}

/// Add one super-block's contribution to the outputs of one row block: y += f * t with
/// t = d * (a - b) or d * a + m * b, a from int8 tables if I8 (see scalar::combine).
#[inline]
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::needless_range_loop)] // one row index reads several arrays
unsafe fn combine<const I8: bool>(
    y: &mut [__m256; 2],
    si: &SuperInts,
    hp: *const u8,
    zero: Zero,
    gi: GroupInput,
) {
    let f = _mm256_set1_ps(gi.f);
    for h in 0..2 {
        // SAFETY: the caller passes the scales of this (row block, super-block): 32 or 64 bytes.
        let d = _mm256_cvtph_ps(_mm_loadu_si128(hp.add(16 * h) as *const __m128i));
        let a = match I8 {
            false => _mm256_cvtepi32_ps(si.a[h]),
            true => _mm256_mul_ps(_mm256_cvtepi32_ps(si.a[h]), _mm256_set1_ps(gi.unit)),
        };
        let t = match (zero, I8) {
            (Zero::Offset(_), false) => {
                _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(si.a[h], si.b[h])))
            }
            (Zero::Offset(_), true) => {
                _mm256_mul_ps(d, _mm256_sub_ps(a, _mm256_cvtepi32_ps(si.b[h])))
            }
            (Zero::Affine, _) => {
                let m = _mm256_cvtph_ps(_mm_loadu_si128(hp.add(32 + 16 * h) as *const __m128i));
                _mm256_add_ps(
                    _mm256_mul_ps(d, a),
                    _mm256_mul_ps(m, _mm256_cvtepi32_ps(si.b[h])),
                )
            }
        };
        y[h] = _mm256_add_ps(y[h], _mm256_mul_ps(f, t));
    }
}

/// A LUT GEMV's matrix, its geometry and its inputs' group values, for tiles of row blocks.
pub(super) struct GemvTile<'a> {
    m: &'a LutMatrix,
    pub(super) g: Geometry,
    gis: Vec<GroupInput>,
}

impl<'a> GemvTile<'a> {
    pub(super) fn new(m: &'a LutMatrix, act: &Activations) -> GemvTile<'a> {
        let g = m.geometry();
        debug_assert!(m.scales.len() >= g.scales_len());
        let gis = GroupInput::all(act, m.group, g.groups);
        GemvTile { m, g, gis }
    }

    /// The outputs of RB row blocks starting at `rb0` into `y`, given every group's integer
    /// sums (`ints`), with int8 tables if I8 (the kind of tables is fixed once per GEMV,
    /// outside the group loop) and sub-scales if SUB.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn run<const RB: usize, const I8: bool, const SUB: bool>(
        &self,
        rb0: usize,
        y: &mut [f32],
        ints: impl FnMut(usize) -> [[__m256i; 2]; RB],
    ) {
        let rbs = std::array::from_fn(|r| rb0 + r);
        let ys = tile_outputs::<RB, I8, SUB>(self.m, &self.g, rbs, [&self.gis; RB], ints);
        for (r, y16) in ys.iter().enumerate() {
            store_row_block(self.m, rb0 + r, y16, y);
        }
    }
}

/// The 16 outputs of each of RB row blocks `rbs[r]`, each with its inputs' group values
/// `gis[r]`, given every group's integer sums (`ints`): the super-block sums and the scales.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn tile_outputs<const RB: usize, const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    g: &Geometry,
    rbs: [usize; RB],
    gis: [&[GroupInput]; RB],
    mut ints: impl FnMut(usize) -> [[__m256i; 2]; RB],
) -> [[f32; 16]; RB] {
    let scales = m.scales.as_slice();
    let zero_si = SuperInts {
        a: [_mm256_setzero_si256(); 2],
        b: [_mm256_setzero_si256(); 2],
    };
    let mut yv = [[_mm256_setzero_ps(); 2]; RB];
    for sb in 0..g.supers {
        let mut si = [zero_si; RB];
        let groups = super::scalar::super_groups(g, sb);
        let first = groups.start;
        for grp in groups {
            let acc = ints(grp);
            for r in 0..RB {
                // SAFETY: the sub-scales of (rbs[r], grp) are in bounds (scales_len checked at
                // validation); without SUB the pointer is not read.
                let sp = scales.as_ptr().wrapping_add(g.sub_at(rbs[r], grp));
                add_group::<SUB>(&mut si[r], acc[r], sp, m.zero, gis[r][grp].s);
            }
        }
        for r in 0..RB {
            // SAFETY: the scales of (rbs[r], sb) are in bounds (checked at validation).
            let hp = scales.as_ptr().add(g.head(rbs[r], sb));
            combine::<I8>(&mut yv[r], &si[r], hp, m.zero, gis[r][first]);
        }
    }
    unpack_outputs(&yv)
}

/// `tile_outputs` for NT inputs over one row block of a matrix without sub-scales, where a
/// super-block is one group: the same operations in the same order, but each group's scales
/// are converted once for all NT inputs and no super-block sums are kept. AFFINE: the zero is
/// `Zero::Affine`, else an offset.
#[inline]
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::needless_range_loop)] // one input index reads several arrays
unsafe fn flat_outputs<const NT: usize, const AFFINE: bool>(
    m: &LutMatrix,
    g: &Geometry,
    rb: usize,
    gis: [&[GroupInput]; NT],
    mut ints: impl FnMut(usize) -> [[__m256i; 2]; NT],
) -> [[f32; 16]; NT] {
    debug_assert!(m.sup.is_none() && AFFINE == (m.zero == Zero::Affine));
    let offset = match m.zero {
        Zero::Offset(o) => o as i32,
        Zero::Affine => 0,
    };
    let mut yv = [[_mm256_setzero_ps(); 2]; NT];
    for grp in 0..g.groups {
        let acc = ints(grp);
        // SAFETY: the scales of (rb, grp) are in bounds (checked at validation): 32 bytes of
        // d, then 32 of m if affine.
        let hp = m.scales.as_slice().as_ptr().add(g.head(rb, grp));
        let half = |o: usize| _mm256_cvtph_ps(_mm_loadu_si128(hp.add(o) as *const __m128i));
        let d = [half(0), half(16)];
        let mn = if AFFINE { [half(32), half(48)] } else { d };
        for t in 0..NT {
            let gi = gis[t][grp];
            let f = _mm256_set1_ps(gi.f);
            for h in 0..2 {
                let tv = if AFFINE {
                    let b = _mm256_cvtepi32_ps(_mm256_set1_epi32(gi.s));
                    let a = _mm256_cvtepi32_ps(acc[t][h]);
                    _mm256_add_ps(_mm256_mul_ps(d[h], a), _mm256_mul_ps(mn[h], b))
                } else {
                    let b = _mm256_set1_epi32(offset * gi.s);
                    _mm256_mul_ps(d[h], _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[t][h], b)))
                };
                yv[t][h] = _mm256_add_ps(yv[t][h], _mm256_mul_ps(f, tv));
            }
        }
    }
    unpack_outputs(&yv)
}

/// Each row block's 16 float accumulators as an array.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unpack_outputs<const RB: usize>(yv: &[[__m256; 2]; RB]) -> [[f32; 16]; RB] {
    let mut out = [[0f32; 16]; RB];
    for (o, v) in out.iter_mut().zip(yv) {
        // SAFETY: o holds 16 floats.
        _mm256_storeu_ps(o.as_mut_ptr(), v[0]);
        _mm256_storeu_ps(o.as_mut_ptr().add(8), v[1]);
    }
    out
}

fn store_row_block(m: &LutMatrix, rb: usize, y16: &[f32; 16], y: &mut [f32]) {
    let n = (m.rows - rb * 16).min(16);
    y[rb * 16..rb * 16 + n].copy_from_slice(&y16[..n]);
}

/// Unpack row block `rb` of a BITS-bit matrix into a code tile (scalar::unpack_tile). Per plane
/// byte of 8 rows, vpshufb repeats each row's byte 4 times, a mask picks column l's bit, and
/// the planes, highest first, are folded in as code = 2 code + bit.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unpack_tile<const BITS: usize>(data: &[u8], g: &Geometry, rb: usize, tile: &mut [u8]) {
    let quads = 2 * g.chunks;
    let pairs = BITS / 2;
    debug_assert!(BITS == g.bits);
    debug_assert!(data.len() >= (rb + 1) * g.chunks * g.chunk_bytes);
    debug_assert!(tile.len() >= super::scalar::tile_len(g));
    // byte 4 r + l of lane L (row 4 L + r of the half) <- plane byte `from(row)`
    let spread = |from: &dyn Fn(i8) -> i8| {
        let b: [i8; 32] = std::array::from_fn(|i| from((i / 4) as i8));
        _mm256_loadu_si256(b.as_ptr() as *const __m256i)
    };
    // a plane pair's half holds (row, plane) at byte 2 row + plane
    let (even, odd) = (spread(&|r| 2 * r), spread(&|r| 2 * r + 1));
    // the lone plane holds row j of the block at byte j
    let lone = [spread(&|r| r), spread(&|r| 8 + r)];
    // quad 2c + n: column l's bit is bit l + 4 n of the plane byte
    let masks = [
        _mm256_set1_epi32(0x0804_0201),
        _mm256_set1_epi32(0x8040_2010_u32 as i32),
    ];
    for c in 0..g.chunks {
        // SAFETY: chunk (rb, c) and the tile's quads 2c, 2c+1 are in bounds (debug-asserted
        // above; the dispatch checks the matrix, the caller sizes the tile).
        let blk = data.as_ptr().add((rb * g.chunks + c) * 16 * BITS);
        for (h, lone) in lone.iter().enumerate() {
            let mut code = [_mm256_setzero_si256(); 2];
            let mut fold = |bytes: __m256i| {
                for (code, mask) in code.iter_mut().zip(masks) {
                    let bit = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask);
                    *code = _mm256_sub_epi8(_mm256_add_epi8(*code, *code), bit);
                }
            };
            let half = |o: usize| _mm256_broadcastsi128_si256(_mm_loadu_si128(blk.add(o) as _));
            if BITS % 2 == 1 {
                fold(_mm256_shuffle_epi8(half(pairs * 32), *lone));
            }
            for pp in (0..pairs).rev() {
                let v = half(pp * 32 + 16 * h);
                fold(_mm256_shuffle_epi8(v, odd));
                fold(_mm256_shuffle_epi8(v, even));
            }
            for (n, code) in code.iter().enumerate() {
                let at = (h * quads + 2 * c + n) * 32;
                _mm256_storeu_si256(tile.as_mut_ptr().add(at) as *mut __m256i, *code);
            }
        }
    }
}

/// Sums of q * a over quads k0..k1 of a code tile for NT inputs at once (`a[t]`: input t's
/// int8 activations), each weight vector loaded once for all of them: vpmaddubsw of 8 rows x
/// 4 codes with 4 broadcast activations, summed in 16 bits while that is exact, then widened;
/// with VNNI (the caller checked the CPU has it), vpdpbusd adds each row's 4 products to its
/// 32-bit sum in one step: the same exact sums.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile_group_ints<const BITS: usize, const NT: usize, const VNNI: bool>(
    tile: &[u8],
    quads: usize,
    a: [&[i8]; NT],
    (k0, k1): (usize, usize),
) -> [[__m256i; 2]; NT] {
    // each vpmaddubsw lane is at most 2 * (2^BITS - 1) * 128 in magnitude
    let flush = 32767 / (256 * ((1 << BITS) - 1));
    debug_assert!(tile.len() >= (quads + k1) * 32 && a.iter().all(|a| a.len() >= 4 * k1));
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; NT];
    if VNNI {
        for kk in k0..k1 {
            // SAFETY: quads kk of both halves and activations 4kk..4kk+3 are in bounds
            // (debug-asserted above; the dispatch checks the widths); the caller checked VNNI.
            let w0 = _mm256_loadu_si256(tile.as_ptr().add(kk * 32) as *const __m256i);
            let w1 = _mm256_loadu_si256(tile.as_ptr().add((quads + kk) * 32) as *const __m256i);
            for (acc, a) in acc.iter_mut().zip(a) {
                let x = _mm256_set1_epi32((a.as_ptr().add(4 * kk) as *const i32).read_unaligned());
                acc[0] = dpbusd(acc[0], w0, x);
                acc[1] = dpbusd(acc[1], w1, x);
            }
        }
        return acc;
    }
    let mut k = k0;
    while k < k1 {
        let kend = (k + flush).min(k1);
        let mut s16 = [[_mm256_setzero_si256(); 2]; NT];
        for kk in k..kend {
            // SAFETY: quads kk of both halves and activations 4kk..4kk+3 are in bounds
            // (debug-asserted above; the dispatch checks the widths).
            let w0 = _mm256_loadu_si256(tile.as_ptr().add(kk * 32) as *const __m256i);
            let w1 = _mm256_loadu_si256(tile.as_ptr().add((quads + kk) * 32) as *const __m256i);
            for (s, a) in s16.iter_mut().zip(a) {
                let x = _mm256_set1_epi32((a.as_ptr().add(4 * kk) as *const i32).read_unaligned());
                s[0] = _mm256_add_epi16(s[0], _mm256_maddubs_epi16(w0, x));
                s[1] = _mm256_add_epi16(s[1], _mm256_maddubs_epi16(w1, x));
            }
        }
        for (acc, s) in acc.iter_mut().zip(s16) {
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(s[0], ones));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(s[1], ones));
        }
        k = kend;
    }
    acc
}

/// acc + the sum of each 32-bit lane's 4 byte products w (unsigned) x x (signed): AVX-512
/// VNNI's vpdpbusd, EVEX-encoded (AVX-VNNI's VEX form is another CPUID bit). Inline assembly,
/// so the AVX2 batched kernel can use it with no AVX-512 target_feature of its own: rustc
/// cannot inline an intrinsic into a function without the intrinsic's features.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and VL.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dpbusd(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    let mut acc = acc;
    // SAFETY: the caller checked the CPU has AVX-512 VNNI and VL; the instruction reads and
    // writes these registers only.
    std::arch::asm!(
        "{{evex}} vpdpbusd {a}, {w}, {x}",
        a = inout(ymm_reg) acc,
        w = in(ymm_reg) w,
        x = in(ymm_reg) x,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// The quads of group `grp`.
fn group_quads(g: &Geometry, grp: usize) -> (usize, usize) {
    let k0 = 2 * grp * g.group_chunks;
    (k0, (k0 + 2 * g.group_chunks).min(2 * g.chunks))
}

/// Inputs t0..t0 + NT over the code tile of row block `rb`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_inputs<const BITS: usize, const NT: usize, const SUB: bool, const VNNI: bool>(
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
    let ints = |grp| tile_group_ints::<BITS, NT, VNNI>(tile, quads, a, group_quads(g, grp));
    let out = match (SUB, m.zero) {
        (true, _) => tile_outputs::<NT, false, SUB>(m, g, [rb; NT], gs, ints),
        (false, Zero::Affine) => flat_outputs::<NT, true>(m, g, rb, gs, ints),
        (false, Zero::Offset(_)) => flat_outputs::<NT, false>(m, g, rb, gs, ints),
    };
    for (t, y16) in out.iter().enumerate() {
        store_row_block(m, rb, y16, &mut ys[(t0 + t) * m.rows..][..m.rows]);
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn gemm_bits<const BITS: usize, const SUB: bool, const VNNI: bool>(
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
            gemm_inputs::<BITS, 4, SUB, VNNI>(m, &g, &tile, rb, acts, &gis, t, ys);
            t += 4;
        }
        match acts.len() - t {
            3 => gemm_inputs::<BITS, 3, SUB, VNNI>(m, &g, &tile, rb, acts, &gis, t, ys),
            2 => gemm_inputs::<BITS, 2, SUB, VNNI>(m, &g, &tile, rb, acts, &gis, t, ys),
            1 => gemm_inputs::<BITS, 1, SUB, VNNI>(m, &g, &tile, rb, acts, &gis, t, ys),
            _ => {}
        }
    }
}

/// `lut_gemm` with the kind of scales fixed; VNNI: vpdpbusd (see `dpbusd`).
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn gemm_sub<const SUB: bool, const VNNI: bool>(
    m: &LutMatrix,
    acts: &[Activations],
    ys: &mut [f32],
) {
    match m.bits {
        1 => gemm_bits::<1, SUB, VNNI>(m, acts, ys),
        2 => gemm_bits::<2, SUB, VNNI>(m, acts, ys),
        3 => gemm_bits::<3, SUB, VNNI>(m, acts, ys),
        4 => gemm_bits::<4, SUB, VNNI>(m, acts, ys),
        5 => gemm_bits::<5, SUB, VNNI>(m, acts, ys),
        _ => gemm_bits::<6, SUB, VNNI>(m, acts, ys),
    }
}

/// Y = W X for inputs quantized without tables (scalar::lut_gemm): every row block unpacked
/// once into a code tile, then int8 dot products with every input, two at a time.
///
/// # Safety
/// AVX2 and F16C must be available; the matrix's bytes must match its shape, every input must
/// be at least as wide as its padded columns and `ys` hold `m.rows` outputs per input.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn lut_gemm(m: &LutMatrix, acts: &[Activations], ys: &mut [f32]) {
    match m.sup.is_some() {
        false => gemm_sub::<false, false>(m, acts, ys),
        true => gemm_sub::<true, false>(m, acts, ys),
    }
}

/// The batched kernel's integer sums for one input, `[row block][group][16]` (for tests).
///
/// # Safety
/// As `lut_gemm`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn tile_ints(m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    tile_ints_with::<false>(m, act, out)
}

/// `tile_ints`; VNNI: vpdpbusd (see `dpbusd`).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn tile_ints_with<const VNNI: bool>(
    m: &LutMatrix,
    act: &Activations,
    out: &mut Vec<i32>,
) {
    match m.bits {
        1 => tile_ints_bits::<1, VNNI>(m, act, out),
        2 => tile_ints_bits::<2, VNNI>(m, act, out),
        3 => tile_ints_bits::<3, VNNI>(m, act, out),
        4 => tile_ints_bits::<4, VNNI>(m, act, out),
        5 => tile_ints_bits::<5, VNNI>(m, act, out),
        _ => tile_ints_bits::<6, VNNI>(m, act, out),
    }
}

#[target_feature(enable = "avx2")]
unsafe fn tile_ints_bits<const BITS: usize, const VNNI: bool>(
    m: &LutMatrix,
    act: &Activations,
    out: &mut Vec<i32>,
) {
    let g = m.geometry();
    let mut tile = vec![0u8; super::scalar::tile_len(&g)];
    out.clear();
    for rb in 0..g.row_blocks {
        unpack_tile::<BITS>(m.data.as_slice(), &g, rb, &mut tile);
        for grp in 0..g.groups {
            let quads = group_quads(&g, grp);
            let [[a, b]] = tile_group_ints::<BITS, 1, VNNI>(&tile, 2 * g.chunks, [&act.a], quads);
            let mut v = [0i32; 16];
            // SAFETY: v has room for 16 i32.
            _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, a);
            _mm256_storeu_si256(v.as_mut_ptr().add(8) as *mut __m256i, b);
            out.extend_from_slice(&v);
        }
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn lut_gemv_bits<const BITS: usize, const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &super::Knobs,
) {
    debug_assert!(y.len() >= m.rows);
    let (t, data, pf) = (GemvTile::new(m, act), m.data.as_slice(), knobs.prefetch);
    for (rb, n) in super::row_tiles(rbs, knobs.row_tile) {
        match n {
            2 => t.run::<2, I8, SUB>(rb, y, |grp| {
                group_ints::<BITS, 2, I8>(data, &t.g, &act.tables, rb, grp, pf)
            }),
            _ => t.run::<1, I8, SUB>(rb, y, |grp| {
                group_ints::<BITS, 1, I8>(data, &t.g, &act.tables, rb, grp, pf)
            }),
        }
    }
}

/// `lut_gemv` with the code width fixed.
#[target_feature(enable = "avx2,f16c")]
unsafe fn lut_gemv_kind<const I8: bool, const SUB: bool>(
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &super::Knobs,
) {
    match m.bits {
        1 => lut_gemv_bits::<1, I8, SUB>(m, act, y, rbs, knobs),
        2 => lut_gemv_bits::<2, I8, SUB>(m, act, y, rbs, knobs),
        3 => lut_gemv_bits::<3, I8, SUB>(m, act, y, rbs, knobs),
        4 => lut_gemv_bits::<4, I8, SUB>(m, act, y, rbs, knobs),
        5 => lut_gemv_bits::<5, I8, SUB>(m, act, y, rbs, knobs),
        _ => lut_gemv_bits::<6, I8, SUB>(m, act, y, rbs, knobs),
    }
}

/// y = W x for a LUT matrix, row blocks `rbs` (see scalar::lut_gemv for the semantics).
///
/// # Safety
/// AVX2 and F16C must be available; `act` must have its tables built for this matrix's width.
#[target_feature(enable = "avx2,f16c")]
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

/// `lut::quantize_int8_scalar` 8 at a time: multiply, round half to even by adding and subtracting
/// 1.5 * 2^23 (as math::round_even32), NaN to 0, clamp, convert (exact: already integers),
/// narrow with saturation (a no-op after the clamp).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_int8(x: &[f32], s: f32, q: &mut [i8]) {
    const MAGIC: f32 = 12_582_912.0;
    let n = x.len().min(q.len());
    let main = n - n % 8;
    let (sv, mv) = (_mm256_set1_ps(s), _mm256_set1_ps(MAGIC));
    let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
    let mut i = 0;
    while i < main {
        // SAFETY: i + 8 <= main <= n, within x and q.
        let t = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), sv);
        let r = _mm256_sub_ps(_mm256_add_ps(t, mv), mv);
        let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
        let r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
        let v = _mm256_cvtps_epi32(r);
        let w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storel_epi64(q.as_mut_ptr().add(i) as *mut __m128i, _mm_packs_epi16(w, w));
        i += 8;
    }
    super::lut::quantize_int8_scalar(&x[main..n], s, &mut q[main..n]);
}

/// `lut::exact_tables_scalar` with vpmaddubsw: entry i of a table is bit0(i) a0 + bit1(i) a1 +
/// bit2(i) a2 + bit3(i) a3, two vpmaddubsw of the 0/1 bit pairs of i (unsigned) with (a0, a1)
/// and (a2, a3) broadcast (at most 2 * 128 in magnitude: no saturation); then the 16 int16
/// entries are split into their low and high bytes.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn exact_tables(a: &[i8], out: &mut [u8]) {
    let bits = |l: usize| {
        let b: [u8; 32] = std::array::from_fn(|j| ((j / 2) >> (l + j % 2) & 1) as u8);
        _mm256_loadu_si256(b.as_ptr() as *const __m256i)
    };
    let (b01, b23) = (bits(0), bits(2));
    // per lane: low bytes of its 8 entries, then their high bytes
    let split = _mm256_setr_epi8(
        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, //
        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
    );
    for (q, o) in a.chunks_exact(4).zip(out.chunks_exact_mut(TABLE_BYTES)) {
        let v01 = _mm256_set1_epi16(i16::from_le_bytes([q[0] as u8, q[1] as u8]));
        let v23 = _mm256_set1_epi16(i16::from_le_bytes([q[2] as u8, q[3] as u8]));
        let e = _mm256_add_epi16(
            _mm256_maddubs_epi16(b01, v01),
            _mm256_maddubs_epi16(b23, v23),
        );
        // lo 0-7, hi 0-7 | lo 8-15, hi 8-15 -> lo 0-15, hi 0-15
        let t = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(e, split));
        // SAFETY: o is TABLE_BYTES (32) long.
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, t);
    }
}

/// f16 bits to f32 with F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn f16_to_f32(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The 8 float lanes summed in scalar::reduce8's order.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn reduce8(acc: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let q = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)))
}

/// One row of an 8-bit GEMV.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q8_row(
    m: &Q8Matrix,
    act: &Activations,
    block_scales: &[f32],
    r: usize,
    prefetch: usize,
) -> f32 {
    let (q, d) = m.parts();
    let st = m.strides();
    let nb = m.cols / Q8_BLOCK;
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for (b, &fa) in block_scales.iter().enumerate() {
        // SAFETY: row r exists, so do its block b and activations 32b..32b+32 (Q8Matrix::new
        // checked the sizes; the caller keeps r < rows). The prefetch may point past the end,
        // which is harmless (wrapping_add, never dereferenced).
        let i = r * nb + b;
        let qp = q.as_ptr().add(i * st.q_stride + st.q_skip);
        _mm_prefetch::<_MM_HINT_T1>(qp.wrapping_add(prefetch) as *const i8);
        let sc = f16_to_f32(d.as_ptr().add(i * st.d_stride)) * fa;
        let w = _mm256_loadu_si256(qp as *const __m256i);
        let a = _mm256_loadu_si256(act.a.as_ptr().add(b * Q8_BLOCK) as *const __m256i);
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        let s = _mm256_madd_epi16(p, ones);
        acc = _mm256_add_ps(
            acc,
            _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc)),
        );
    }
    reduce8(acc)
}

/// y = W x for an 8-bit matrix (see scalar::q8_gemv for the semantics).
///
/// # Safety
/// AVX2 and F16C must be available; `act` must cover the matrix's columns.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q8_gemv(m: &Q8Matrix, act: &Activations, y: &mut [f32], knobs: &super::Knobs) {
    let nb = m.cols / Q8_BLOCK;
    debug_assert!(
        m.parts().0.len() >= m.rows * nb * m.strides().q_stride
            && act.a.len() >= m.cols
            && y.len() >= m.rows
    );
    let block_scales = act.block_scales(Q8_BLOCK, nb);
    for (r, yr) in y.iter_mut().enumerate().take(m.rows) {
        *yr = q8_row(m, act, &block_scales, r, knobs.prefetch);
    }
}

/// One row of an 8-bit GEMM for NT inputs at once (`q8_row` for each): each weight block is
/// loaded, and its magnitudes and scale formed, once for all of them.
#[inline]
#[allow(clippy::needless_range_loop)] // block b indexes the weights and every input's scales
#[target_feature(enable = "avx2,f16c")]
unsafe fn q8_row_inputs<const NT: usize, const VNNI: bool>(
    m: &Q8Matrix,
    a: [&[i8]; NT],
    block_scales: [&[f32]; NT],
    r: usize,
) -> [f32; NT] {
    let (q, d) = m.parts();
    let st = m.strides();
    let nb = m.cols / Q8_BLOCK;
    debug_assert!(
        a.iter().all(|a| a.len() >= m.cols) && block_scales.iter().all(|b| b.len() == nb)
    );
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); NT];
    for b in 0..nb {
        // SAFETY: row r exists, so do its block b and activations 32b..32b+32 (Q8Matrix::new
        // checked the sizes; the caller keeps r < rows and checked the inputs' widths); with
        // VNNI, the caller checked the CPU has it.
        let i = r * nb + b;
        let qp = q.as_ptr().add(i * st.q_stride + st.q_skip);
        let dw = f16_to_f32(d.as_ptr().add(i * st.d_stride));
        let w = _mm256_loadu_si256(qp as *const __m256i);
        let aw = _mm256_sign_epi8(w, w);
        for t in 0..NT {
            let sc = dw * block_scales[t][b];
            let x = _mm256_loadu_si256(a[t].as_ptr().add(b * Q8_BLOCK) as *const __m256i);
            let xw = _mm256_sign_epi8(x, w);
            let s = match VNNI {
                true => dpbusd(_mm256_setzero_si256(), aw, xw),
                false => _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xw), ones),
            };
            acc[t] = _mm256_add_ps(
                acc[t],
                _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc)),
            );
        }
    }
    let mut out = [0f32; NT];
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = reduce8(acc);
    }
    out
}

/// Y = W X for an 8-bit matrix and several inputs: row by row, each row's weights read once for
/// all inputs (four at a time), every output as `q8_gemv` computes it.
///
/// # Safety
/// AVX2 and F16C must be available; every input must cover the matrix's columns and `ys` hold
/// `m.rows` outputs per input.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q8_gemm(m: &Q8Matrix, acts: &[Activations], ys: &mut [f32]) {
    q8_gemm_with::<false>(m, acts, ys)
}

/// `q8_gemm`; VNNI: vpdpbusd (see `dpbusd`).
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn q8_gemm_with<const VNNI: bool>(
    m: &Q8Matrix,
    acts: &[Activations],
    ys: &mut [f32],
) {
    let nb = m.cols / Q8_BLOCK;
    let scales: Vec<Vec<f32>> = acts.iter().map(|a| a.block_scales(Q8_BLOCK, nb)).collect();
    for r in 0..m.rows {
        let mut t0 = 0;
        while t0 < acts.len() {
            let n = (acts.len() - t0).min(4);
            let mut out = [0f32; 4];
            match n {
                4 => out = q8_inputs::<4, VNNI>(m, acts, &scales, t0, r),
                3 => out[..3].copy_from_slice(&q8_inputs::<3, VNNI>(m, acts, &scales, t0, r)),
                2 => out[..2].copy_from_slice(&q8_inputs::<2, VNNI>(m, acts, &scales, t0, r)),
                _ => out[..1].copy_from_slice(&q8_inputs::<1, VNNI>(m, acts, &scales, t0, r)),
            }
            for (t, &v) in out[..n].iter().enumerate() {
                ys[(t0 + t) * m.rows + r] = v;
            }
            t0 += n;
        }
    }
}

/// Row r for inputs t0..t0 + NT.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q8_inputs<const NT: usize, const VNNI: bool>(
    m: &Q8Matrix,
    acts: &[Activations],
    scales: &[Vec<f32>],
    t0: usize,
    r: usize,
) -> [f32; NT] {
    let (mut a, mut bs): ([&[i8]; NT], [&[f32]; NT]) = ([&[]; NT], [&[]; NT]);
    for t in 0..NT {
        (a[t], bs[t]) = (&acts[t0 + t].a, &scales[t0 + t]);
    }
    q8_row_inputs::<NT, VNNI>(m, a, bs, r)
}

/// The 8 rows of row group g of a codebook GEMV for NT inputs at once (`a[t]`, with block
/// scales `fs[t]`): per step of a tile's codes, one 32-byte load gives each row 8 codes (4 from
/// the low nibbles, 4 from the high), vpshufb turns them into int8 weights, and
/// vpmaddubsw/vpmaddwd against 4 activations broadcast to every row sum them in that row's
/// 32-bit lane, times the group's scale. The weights are decoded once for all inputs; each
/// input's sums run in the same order as alone (same bits). XS: IQ4_XS tiles.
#[inline]
#[allow(clippy::needless_range_loop)] // input t indexes the activations, scales and sums
#[target_feature(enable = "avx2,f16c")]
unsafe fn iq4_rows<const XS: bool, const NT: usize, const VNNI: bool>(
    m: &Iq4Matrix,
    a: [&[i8]; NT],
    fs: [&[f32]; NT],
    g: usize,
    prefetch: usize,
) -> [__m256; NT] {
    // the tile's shape as constants, so the loops over its groups and lines unroll
    let subs = if XS { 8 } else { 1 };
    // 8 d (f16), IQ4_XS's 8 scale bytes per group, 128 code bytes per group
    let codes = 16 + if XS { 8 * subs } else { 0 };
    let (bl, tb) = (32 * subs, codes + 128 * subs);
    debug_assert!((bl, tb, codes) == (m.block(), m.tile_bytes(), m.codes_offset(0, 0)));
    let nb = m.cols / bl;
    debug_assert!(a.iter().all(|a| a.len() >= m.cols) && fs.iter().all(|f| f.len() == nb));
    let book = _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4_CODEBOOK.as_ptr() as *const _));
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let tiles = m.data.as_slice()[g * nb * tb..][..nb * tb].as_ptr();
    let mut acc = [_mm256_setzero_ps(); NT];
    for b in 0..nb {
        // SAFETY: row group g has nb tiles of tb bytes (sliced above).
        let tp = tiles.add(b * tb);
        // Prefetch every cache line of the tile (2-3 for IQ4_NL, 17-18 for IQ4_XS): one
        // prefetch a tile left most lines to the hardware, 1.2x slower. The prefetch address
        // may run past the end; it is never dereferenced.
        for o in (0..tb).step_by(64) {
            _mm_prefetch::<_MM_HINT_T1>(tp.wrapping_add(prefetch + o) as *const i8);
        }
        let mut li = [_mm256_setzero_si256(); NT];
        for s in 0..subs {
            // SAFETY: the tile holds 8 scale bytes per group after the 8 d and 4 steps of 32
            // code bytes per group from `codes`; the activations cover the block (checked by
            // the dispatch).
            let sc = match XS {
                true => _mm256_cvtepi8_epi32(_mm_loadl_epi64(tp.add(16 + 8 * s) as *const _)),
                false => ones, // IQ4_NL has no group scales (unused)
            };
            let k = if XS {
                // (sc, sc) as the two 16-bit halves of each row's lane
                _mm256_or_si256(
                    _mm256_and_si256(sc, _mm256_set1_epi32(0xFFFF)),
                    _mm256_slli_epi32(sc, 16),
                )
            } else {
                ones
            };
            // with VNNI, the group's plain sums, times its scale once (XS) or added as they are
            let mut si = [_mm256_setzero_si256(); NT];
            for j in 0..4 {
                let w = _mm256_loadu_si256(tp.add(codes + (4 * s + j) * 32) as *const __m256i);
                let wl = _mm256_shuffle_epi8(book, _mm256_and_si256(w, low));
                let wh = _mm256_shuffle_epi8(book, _mm256_and_si256(_mm256_srli_epi16(w, 4), low));
                let (ul, uh) = (_mm256_sign_epi8(wl, wl), _mm256_sign_epi8(wh, wh));
                for t in 0..NT {
                    let ap = a[t].as_ptr().add(b * bl + 32 * s + 4 * j);
                    let a4 =
                        |o: usize| _mm256_set1_epi32((ap.add(o) as *const i32).read_unaligned());
                    let (al, ah) = (a4(0), a4(16));
                    let (xl, xh) = (_mm256_sign_epi8(al, wl), _mm256_sign_epi8(ah, wh));
                    if VNNI {
                        si[t] = dpbusd(dpbusd(si[t], ul, xl), uh, xh);
                        continue;
                    }
                    let (pl, ph) = (_mm256_maddubs_epi16(ul, xl), _mm256_maddubs_epi16(uh, xh));
                    li[t] = _mm256_add_epi32(li[t], _mm256_madd_epi16(pl, k));
                    li[t] = _mm256_add_epi32(li[t], _mm256_madd_epi16(ph, k));
                }
            }
            if VNNI {
                for (li, si) in li.iter_mut().zip(si) {
                    *li = _mm256_add_epi32(*li, if XS { _mm256_mullo_epi32(si, sc) } else { si });
                }
            }
        }
        let d = _mm256_cvtph_ps(_mm_loadu_si128(tp as *const __m128i));
        for t in 0..NT {
            let d = _mm256_mul_ps(d, _mm256_set1_ps(fs[t][b]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(li[t]), d));
        }
    }
    acc
}

/// Row group g's 8 outputs in `y` (rows from 8 g, as many as the matrix has).
#[target_feature(enable = "avx2")]
unsafe fn store_row_group(m: &Iq4Matrix, g: usize, v: __m256, y: &mut [f32]) {
    let mut y8 = [0f32; 8];
    _mm256_storeu_ps(y8.as_mut_ptr(), v);
    let r0 = g * 8;
    let n = (m.rows - r0).min(8);
    y[r0..r0 + n].copy_from_slice(&y8[..n]);
}

/// y = W x for a codebook matrix (see scalar::iq4_gemv for the semantics).
///
/// # Safety
/// AVX2 and F16C must be available; `act` must cover the matrix's columns.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn iq4_gemv(
    m: &Iq4Matrix,
    act: &Activations,
    y: &mut [f32],
    knobs: &super::Knobs,
) {
    debug_assert!(act.a.len() >= m.cols && y.len() >= m.rows);
    let fs = act.block_scales(m.block(), m.cols / m.block());
    let xs = m.typ == crate::layout::ggml::GgmlType::IQ4XS;
    let (a, fs, pf) = ([&act.a[..]], [&fs[..]], knobs.prefetch);
    for g in 0..m.row_groups() {
        let [v] = match xs {
            true => iq4_rows::<true, 1, false>(m, a, fs, g, pf),
            false => iq4_rows::<false, 1, false>(m, a, fs, g, pf),
        };
        store_row_group(m, g, v, y);
    }
}

/// Y = W X for a codebook matrix and several inputs (prefill): each row group's tiles are read
/// and decoded once for up to 4 inputs, every output the bits `iq4_gemv` gives.
///
/// # Safety
/// AVX2 and F16C must be available; every input must cover the matrix's columns and `ys` hold
/// m.rows outputs per input.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn iq4_gemm(
    m: &Iq4Matrix,
    acts: &[Activations],
    ys: &mut [f32],
    knobs: &super::Knobs,
) {
    iq4_gemm_with::<false>(m, acts, ys, knobs)
}

/// `iq4_gemm`; VNNI: vpdpbusd (see `dpbusd`) for the dot products, the same integer sums.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn iq4_gemm_with<const VNNI: bool>(
    m: &Iq4Matrix,
    acts: &[Activations],
    ys: &mut [f32],
    knobs: &super::Knobs,
) {
    debug_assert!(acts.iter().all(|a| a.a.len() >= m.cols) && ys.len() >= acts.len() * m.rows);
    let nb = m.cols / m.block();
    let scales: Vec<Vec<f32>> = acts.iter().map(|a| a.block_scales(m.block(), nb)).collect();
    let xs = m.typ == crate::layout::ggml::GgmlType::IQ4XS;
    let pf = knobs.prefetch;
    for t0 in (0..acts.len()).step_by(4) {
        let n = (acts.len() - t0).min(4);
        // past n, the last input again (iq4_rows_n reads only the first n)
        let a: [&[i8]; 4] = std::array::from_fn(|t| &acts[t0 + t.min(n - 1)].a[..]);
        let fs: [&[f32]; 4] = std::array::from_fn(|t| &scales[t0 + t.min(n - 1)][..]);
        for g in 0..m.row_groups() {
            let vs = match xs {
                true => iq4_rows_n::<true, VNNI>(m, a, fs, g, pf, n),
                false => iq4_rows_n::<false, VNNI>(m, a, fs, g, pf, n),
            };
            for (t, &v) in vs[..n].iter().enumerate() {
                store_row_group(m, g, v, &mut ys[(t0 + t) * m.rows..][..m.rows]);
            }
        }
    }
}

/// `iq4_rows` for the first n (1-4) of the inputs `a`, in the first n results.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn iq4_rows_n<const XS: bool, const VNNI: bool>(
    m: &Iq4Matrix,
    a: [&[i8]; 4],
    fs: [&[f32]; 4],
    g: usize,
    pf: usize,
    n: usize,
) -> [__m256; 4] {
    let mut out = [_mm256_setzero_ps(); 4];
    match n {
        4 => out = iq4_rows::<XS, 4, VNNI>(m, a, fs, g, pf),
        3 => out[..3].copy_from_slice(&iq4_rows::<XS, 3, VNNI>(
            m,
            [a[0], a[1], a[2]],
            [fs[0], fs[1], fs[2]],
            g,
            pf,
        )),
        2 => out[..2].copy_from_slice(&iq4_rows::<XS, 2, VNNI>(
            m,
            [a[0], a[1]],
            [fs[0], fs[1]],
            g,
            pf,
        )),
        _ => out[..1].copy_from_slice(&iq4_rows::<XS, 1, VNNI>(m, [a[0]], [fs[0]], g, pf)),
    }
    out
}
