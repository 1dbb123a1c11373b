//! Compute kernels. `f32` is the portable reference for full-precision weights; `lut` prepares
//! inputs (int8 activations and lookup tables); `scalar`, `avx2` and `neon` implement the T-MAC
//! LUT GEMV and the 8-bit GEMV with identical results, and `avx512` the LUT GEMV again (the
//! rest of its kernel set is AVX2's). The instruction set is the CPU's best
//! (`isa()`) unless the caller asks for another; the knobs (`Knobs`) come from the caller
//! (`crate::settings` reads them from the environment for the `tmac` tool).

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod f32;
pub(crate) mod linear;
pub(crate) mod lut;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod rotate;
pub(crate) mod scalar;

use crate::layout::iq4::Iq4Matrix;
use crate::layout::lut::LutMatrix;
use crate::layout::q8::Q8Matrix;
use lut::{Activations, Tables};
use std::sync::OnceLock;

/// An instruction set of this CPU. A value can only come from detection (`best`, `from_name`,
/// `all` check the CPU) or be `Isa::SCALAR`, so a SIMD kernel is never called on a CPU that
/// lacks its instructions: the dispatch below relies on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Isa(Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Scalar,
    Avx2,
    /// AVX-512 (F, BW, VL, VNNI) for the LUT GEMV and GEMM, AVX2 for the rest.
    Avx512,
    Neon,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Scalar => "scalar",
            Kind::Avx2 => "avx2",
            Kind::Avx512 => "avx512",
            Kind::Neon => "neon",
        }
    }

    /// Can this CPU run it?
    fn detected(self) -> bool {
        match self {
            Kind::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => {
                Kind::Avx2.detected()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Kind::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl Isa {
    /// The portable kernels, on every CPU.
    pub const SCALAR: Isa = Isa(Kind::Scalar);

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The instruction set called `s` ("scalar", "avx2", "avx512", "neon"), if this CPU has it.
    pub fn from_name(s: &str) -> Option<Isa> {
        [Kind::Scalar, Kind::Avx2, Kind::Avx512, Kind::Neon]
            .into_iter()
            .find(|k| k.name() == s && k.detected())
            .map(Isa)
    }

    /// Every instruction set this CPU has, scalar first.
    pub fn all() -> Vec<Isa> {
        [Kind::Scalar, Kind::Avx2, Kind::Avx512, Kind::Neon]
            .into_iter()
            .filter(|k| k.detected())
            .map(Isa)
            .collect()
    }

    /// The best instruction set this CPU has.
    pub fn best() -> Isa {
        *Isa::all().last().unwrap_or(&Isa::SCALAR)
    }

    pub fn is_scalar(self) -> bool {
        self.0 == Kind::Scalar
    }

    /// Whether this set runs the float kernels (`f32.rs`) with AVX2 and F16C: avx2 and avx512.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn float_avx2(self) -> bool {
        matches!(self.0, Kind::Avx2 | Kind::Avx512)
    }

    /// Whether it runs the batched f32 product with AVX-512 F: avx512.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn float_avx512(self) -> bool {
        self.0 == Kind::Avx512
    }
}

/// The instruction set used when the caller asks for none: the best this CPU has.
pub(crate) fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(Isa::best)
}

/// Tuning knobs of the kernels (see `tune`). `row_tile` and `prefetch` change speed, never
/// results. `tables` trades exactness for speed: int8 tables change the logits (the same way
/// on every CPU), so they are off unless asked for (`tmac tune --int8-tables`, TMAC_TABLES).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// Row blocks of 16 rows processed together, sharing each table load (1 or 2).
    pub row_tile: usize,
    /// Bytes ahead of the weight stream to prefetch (0 = off).
    pub prefetch: usize,
    /// Lookup tables the LUT kernels read.
    pub tables: Tables,
}

impl Knobs {
    /// Defaults per instruction set, measured on the machines tmac is tested on.
    pub fn default_for(isa: Isa) -> Knobs {
        match isa {
            Isa(Kind::Neon) => Knobs {
                row_tile: 1,
                prefetch: 512,
                tables: Tables::Exact,
            },
            // AVX2 and AVX-512 on this project's x86-64 test machine (`tmac tune`, every model
            // of `make bench`): pairs of row blocks and 16 KiB ahead were best or within 3%
            _ => Knobs {
                row_tile: 2,
                prefetch: 16384,
                tables: Tables::Exact,
            },
        }
    }
}

/// y = W x for a LUT matrix.
pub fn lut_gemv(isa: Isa, m: &LutMatrix, act: &Activations, y: &mut [f32], knobs: &Knobs) {
    lut_rows(isa, m, act, y, 0..m.rows.div_ceil(16), knobs);
}

/// Rows of y = W x, for the row blocks (of 16 rows) in `rbs`.
fn lut_rows(
    isa: Isa,
    m: &LutMatrix,
    act: &Activations,
    y: &mut [f32],
    rbs: std::ops::Range<usize>,
    knobs: &Knobs,
) {
    let g = check_lut(m, act);
    assert!(
        y.len() >= m.rows && rbs.end <= g.row_blocks,
        "output shorter than the matrix"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2) => unsafe { avx2::lut_gemv(m, act, y, rbs, knobs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx512 exists only where detection found AVX-512 F, BW, VL
        // and VNNI, AVX2 and F16C.
        Isa(Kind::Avx512) => unsafe { avx512::lut_gemv(m, act, y, rbs, knobs) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: an Isa of Kind::Neon exists only where detection found NEON.
        Isa(Kind::Neon) => unsafe { neon::lut_gemv(m, act, y, rbs, knobs) },
        _ => scalar::lut_gemv(m, act, y, rbs),
    }
}

/// The SIMD LUT kernels read through raw pointers: every size they rely on is checked here.
fn check_lut(m: &LutMatrix, act: &Activations) -> crate::layout::lut::Geometry {
    let g = check_matrix(m);
    assert!(
        act.tables_built().is_some(),
        "the activations have no lookup tables"
    );
    check_width(&g, act, m.cols);
    g
}

fn check_matrix(m: &LutMatrix) -> crate::layout::lut::Geometry {
    let g = m.geometry();
    assert!(
        m.data.len() == g.data_len() && m.scales.len() == g.scales_len(),
        "LUT matrix bytes do not match its shape"
    );
    g
}

fn check_width(g: &crate::layout::lut::Geometry, act: &Activations, cols: usize) {
    assert!(
        act.a.len() >= g.chunks * 8,
        "the activations are not prepared for a matrix of {cols} columns"
    );
}

/// Y = W X for several inputs at once (prefill): ys holds one output row of m.rows per input.
/// Inputs without tables, or with exact ones, take the batched kernels: each row block's codes
/// are unpacked once into bytes (a code tile) and every input is multiplied with it by int8 dot
/// products. Those sums are the exact tables' integers, so the outputs equal `lut_gemv`'s bit
/// for bit. With int8 tables (a different, lossy sum) each input runs the LUT GEMV over a tile
/// of rows while its weights are in cache.
pub fn lut_gemm(isa: Isa, m: &LutMatrix, acts: &[Activations], ys: &mut [f32], knobs: &Knobs) {
    assert!(
        ys.len() >= acts.len() * m.rows,
        "output shorter than the batch"
    );
    // int8 tables are a different sum: only the LUT kernels give it; exact tables are read where
    // the instruction set has no batched kernel, and inputs without tables take the scalar one
    let int8 = acts.iter().any(|a| a.tables_built() == Some(Tables::Int8));
    let built = acts.iter().all(|a| a.tables_built().is_some());
    if int8 || (built && gemm_reads_tables(isa, Tables::Exact)) {
        return lut_gemm_tables(isa, m, acts, ys, knobs);
    }
    let g = check_matrix(m);
    for act in acts {
        check_width(&g, act, m.cols);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2) => unsafe { avx2::lut_gemm(m, acts, ys) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx512 exists only where detection found AVX-512 F, BW, VL
        // and VNNI, AVX2 and F16C.
        Isa(Kind::Avx512) => unsafe { avx512::lut_gemm(m, acts, ys) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON was detected (Kind::Neon) and dotprod is checked here.
        Isa(Kind::Neon) if neon_dotprod() => unsafe { neon::lut_gemm(m, acts, ys) },
        _ => scalar::lut_gemm(m, acts, ys),
    }
}

/// `lut_gemm` through the lookup tables: rows a tile at a time, every input over the tile.
fn lut_gemm_tables(isa: Isa, m: &LutMatrix, acts: &[Activations], ys: &mut [f32], knobs: &Knobs) {
    const TILE_ROWS: usize = 64;
    let nrb = m.rows.div_ceil(16);
    let mut rb = 0;
    while rb < nrb {
        let end = (rb + TILE_ROWS / 16).min(nrb);
        for (act, y) in acts.iter().zip(ys.chunks_exact_mut(m.rows)) {
            lut_rows(isa, m, act, y, rb..end, knobs);
        }
        rb = end;
    }
}

/// Whether `lut_gemm` on `isa` reads lookup tables for inputs of `kind`: if not, a batch's
/// inputs need only be quantized. NEON's batched kernel needs sdot (dotprod: Cortex-A76, Pi 5);
/// without it (Cortex-A72, Pi 4) smull and pairwise adds would not beat its table lookups.
pub(crate) fn gemm_reads_tables(isa: Isa, kind: Tables) -> bool {
    kind == Tables::Int8 || (isa.0 == Kind::Neon && !neon_dotprod())
}

#[cfg(target_arch = "aarch64")]
fn neon_dotprod() -> bool {
    neon::has_dotprod()
}

#[cfg(not(target_arch = "aarch64"))]
fn neon_dotprod() -> bool {
    false
}

/// The integer accumulators of `lut_gemm`'s batched kernels for one input, laid out as
/// `lut_ints` (for tests).
pub fn tile_ints(isa: Isa, m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    let g = check_matrix(m);
    check_width(&g, act, m.cols);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2) => unsafe { avx2::tile_ints(m, act, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx512 exists only where detection found AVX-512 F, BW, VL
        // and VNNI, AVX2 and F16C.
        Isa(Kind::Avx512) => unsafe { avx512::tile_ints(m, act, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON was detected (Kind::Neon) and dotprod is checked here.
        Isa(Kind::Neon) if neon_dotprod() => unsafe { neon::tile_ints(m, act, out) },
        _ => scalar::tile_ints(m, act, out),
    }
}

/// The row tiles a SIMD LUT GEMV runs over `rbs`: (first row block, 2) while two row blocks
/// are left and `row_tile` asks for pairs, then (row block, 1).
pub(crate) fn row_tiles(
    rbs: std::ops::Range<usize>,
    row_tile: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let pairs = if row_tile >= 2 { rbs.len() / 2 } else { 0 };
    let singles = rbs.start + 2 * pairs..rbs.end;
    (0..pairs)
        .map(move |i| (rbs.start + 2 * i, 2))
        .chain(singles.map(|rb| (rb, 1)))
}

/// The integer accumulators of a LUT GEMV, `[row block][group][16]` (for tests).
pub fn lut_ints(isa: Isa, m: &LutMatrix, act: &Activations, out: &mut Vec<i32>) {
    check_lut(m, act);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2) => unsafe { avx2::lut_ints(m, act, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx512 exists only where detection found AVX-512 F, BW, VL
        // and VNNI, AVX2 and F16C.
        Isa(Kind::Avx512) => unsafe { avx512::lut_ints(m, act, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: an Isa of Kind::Neon exists only where detection found NEON.
        Isa(Kind::Neon) => unsafe { neon::lut_ints(m, act, out) },
        _ => scalar::lut_ints(m, act, out),
    }
}

/// y = W x for an 8-bit matrix.
pub fn q8_gemv(isa: Isa, m: &Q8Matrix, act: &Activations, y: &mut [f32], knobs: &Knobs) {
    assert!(
        act.a.len() >= m.cols,
        "the activations are shorter than the matrix"
    );
    assert!(y.len() >= m.rows, "output shorter than the matrix");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 or Avx512 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2 | Kind::Avx512) => unsafe { avx2::q8_gemv(m, act, y, knobs) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: an Isa of Kind::Neon exists only where detection found NEON.
        Isa(Kind::Neon) => unsafe { neon::q8_gemv(m, act, y, knobs) },
        _ => scalar::q8_gemv(m, act, y),
    }
}

/// Y = W X for an 8-bit matrix and several inputs (prefill): ys holds m.rows outputs per
/// input, each the same bits `q8_gemv` gives; AVX2 reads each row's weights once for all of
/// them.
pub fn q8_gemm(isa: Isa, m: &Q8Matrix, acts: &[Activations], ys: &mut [f32], knobs: &Knobs) {
    check_batch(m.cols, m.rows, acts, ys);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2) => unsafe { avx2::q8_gemm(m, acts, ys) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx512 exists only where detection found AVX-512 F, BW, VL
        // and VNNI, AVX2 and F16C.
        Isa(Kind::Avx512) => unsafe { avx512::q8_gemm(m, acts, ys) },
        _ => {
            for (act, y) in acts.iter().zip(ys.chunks_exact_mut(m.rows)) {
                q8_gemv(isa, m, act, y, knobs);
            }
        }
    }
}

/// y = W x for a 4-bit codebook matrix (IQ4_NL, IQ4_XS).
pub(crate) fn iq4_gemv(isa: Isa, m: &Iq4Matrix, act: &Activations, y: &mut [f32], knobs: &Knobs) {
    assert!(
        act.a.len() >= m.cols,
        "the activations are shorter than the matrix"
    );
    assert!(y.len() >= m.rows, "output shorter than the matrix");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 or Avx512 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2 | Kind::Avx512) => unsafe { avx2::iq4_gemv(m, act, y, knobs) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: an Isa of Kind::Neon exists only where detection found NEON.
        Isa(Kind::Neon) => unsafe { neon::iq4_gemv(m, act, y, knobs) },
        _ => scalar::iq4_gemv(m, act, y),
    }
}

/// Y = W X for a codebook matrix and several inputs (prefill): ys holds m.rows outputs per
/// input, each the same bits `iq4_gemv` gives; AVX2 decodes each tile once for up to 4 of them.
pub(crate) fn iq4_gemm(
    isa: Isa,
    m: &Iq4Matrix,
    acts: &[Activations],
    ys: &mut [f32],
    knobs: &Knobs,
) {
    check_batch(m.cols, m.rows, acts, ys);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx2 or Avx512 exists only where detection found AVX2 and F16C.
        Isa(Kind::Avx2) => unsafe { avx2::iq4_gemm(m, acts, ys, knobs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of Kind::Avx512 exists only where detection found AVX-512 VNNI and VL.
        Isa(Kind::Avx512) => unsafe { avx512::iq4_gemm(m, acts, ys, knobs) },
        _ => {
            for (act, y) in acts.iter().zip(ys.chunks_exact_mut(m.rows)) {
                iq4_gemv(isa, m, act, y, knobs);
            }
        }
    }
}

/// Panics unless every input covers `cols` and `ys` holds `rows` outputs per input: checked
/// before any SIMD load of a batched kernel.
fn check_batch(cols: usize, rows: usize, acts: &[Activations], ys: &[f32]) {
    assert!(
        acts.iter().all(|a| a.a.len() >= cols),
        "the activations are shorter than the matrix"
    );
    assert!(
        ys.len() >= acts.len() * rows,
        "output shorter than the batch"
    );
}

/// The candidates `tune` tries on `isa`: every prefetch distance, both row tiles where the
/// kernels have them (AVX2, NEON), both kinds of tables.
pub fn candidates(isa: Isa) -> Vec<Knobs> {
    let row_tiles: &[usize] = if isa.is_scalar() { &[1] } else { &[1, 2] };
    let mut v = Vec::new();
    for tables in [Tables::Exact, Tables::Int8] {
        for &row_tile in row_tiles {
            for prefetch in [0, 512, 1024, 2048, 4096, 8192, 16384] {
                v.push(Knobs {
                    row_tile,
                    prefetch,
                    tables,
                });
            }
        }
    }
    v
}
