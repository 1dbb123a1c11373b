//! Quantizers from f32 to tmac's weight types (`Target`): a matrix of floats in, a `Linear` in
//! kernel layout out. `convert::quantize` applies them to whole files.

use super::gptq::{self, Grid, Sweep};
use super::linear::Linear;
use super::lut::{self, LutMatrix, Zero};
use super::q8::Q8Matrix;
use crate::error::{Error, Result};

/// Where a ternary scale applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Tensor,
    Row,
    Group(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Ternary {-1, 0, 1} times an absmean scale (BitNet's rule).
    Tq(Scope),
    /// b-bit codes (b = 1 to 4), scale and minimum per group of columns.
    Q(u32, usize),
    /// b-bit codes (b = 2 to 4) in ggml's K-quant scheme: scale and minimum per 16 columns as
    /// 8-bit integers under f16 factors per super-block of about 256 columns (finer groups for
    /// about the bytes of `Q(b, 32)`).
    K(u32),
    /// 8-bit, blocks of 32 with one scale.
    Q8,
    F32,
}

impl Target {
    /// Parse a `--type` name with its `--group` and `--scale` options.
    pub fn parse(name: &str, group: usize, scale: &str) -> Result<Target> {
        if group == 0 || !group.is_multiple_of(8) {
            return Err(Error::invalid(format!(
                "group size {group} must be a positive multiple of 8"
            )));
        }
        Ok(match name {
            "tq" => Target::Tq(match scale {
                "tensor" => Scope::Tensor,
                "row" => Scope::Row,
                "group" => Scope::Group(group),
                s => {
                    return Err(Error::invalid(format!(
                        "--scale {s}: use tensor, row or group"
                    )))
                }
            }),
            "q1" => Target::Q(1, group),
            "q2" => Target::Q(2, group),
            "q3" => Target::Q(3, group),
            "q4" => Target::Q(4, group),
            "q2k" => Target::K(2),
            "q3k" => Target::K(3),
            "q4k" => Target::K(4),
            "q8" => Target::Q8,
            "f32" => Target::F32,
            t => {
                return Err(Error::invalid(format!(
                    "unknown type '{t}' (tq, q1, q2, q3, q4, q2k, q3k, q4k, q8, f32)"
                )))
            }
        })
    }

    pub fn name(self) -> String {
        match self {
            Target::Tq(Scope::Tensor) => "tq (scale per tensor)".into(),
            Target::Tq(Scope::Row) => "tq (scale per row)".into(),
            Target::Tq(Scope::Group(g)) => format!("tq (scale per {g})"),
            Target::Q(b, g) => format!("q{b} (group {g})"),
            Target::K(b) => format!("q{b}k (group {K_GROUP})"),
            Target::Q8 => "q8".into(),
            Target::F32 => "f32".into(),
        }
    }
}

/// Columns per scale group of the K types, and groups per super-block (ggml's 256 columns).
pub(crate) const K_GROUP: usize = 16;
pub(crate) const K_SUPER: usize = 16;

/// Groups per super-block for a row of `groups` groups: the divisor of `groups` from 8 to 32
/// nearest `K_SUPER` (the larger on a tie), as the layout stores a partial last super-block
/// at full size (576 columns: 18 groups of 16 per super-block, not 16 + 16 + 4); K_SUPER if
/// none divides.
fn k_super(groups: usize) -> usize {
    (8..=32)
        .filter(|n| groups.is_multiple_of(*n))
        .min_by_key(|&n| (n.abs_diff(K_SUPER), usize::MAX - n))
        .unwrap_or(K_SUPER)
}

/// Quantize a row-major (rows, cols) f32 matrix, each weight to its nearest code.
pub fn quantize_matrix(t: Target, rows: usize, cols: usize, w: &[f32]) -> Result<Linear> {
    Ok(match t {
        Target::F32 => Linear::F32 {
            rows,
            cols,
            w: w.to_vec(),
        },
        Target::Q8 if cols.is_multiple_of(32) => Linear::Q8(Q8Matrix::quantize(rows, cols, w)?),
        Target::Q8 => Linear::F32 {
            rows,
            cols,
            w: w.to_vec(),
        },
        Target::Q(..) | Target::K(_) | Target::Tq(_) => {
            Linear::Lut(round_to_lut(t, rows, cols, w, None, &vec![1.0; cols]))
        }
    })
}

/// Quantize a matrix by GPTQ's `sweep` over its columns, `imp` the Hessian's diagonal (the
/// LUT types; the others, which keep 8 bits or more, as `quantize_matrix`).
pub(crate) fn quantize_matrix_gptq(
    t: Target,
    rows: usize,
    cols: usize,
    w: &[f32],
    (sweep, imp): (&Sweep, &[f32]),
) -> Result<Linear> {
    match t {
        Target::Q(..) | Target::K(_) | Target::Tq(_) => Ok(Linear::Lut(round_to_lut(
            t,
            rows,
            cols,
            w,
            Some(sweep),
            imp,
        ))),
        _ => quantize_matrix(t, rows, cols, w),
    }
}

/// Codes and group parameters by `gptq::round_matrix` (to nearest without a sweep), packed.
fn round_to_lut(
    t: Target,
    rows: usize,
    cols: usize,
    w: &[f32],
    sweep: Option<&Sweep>,
    imp: &[f32],
) -> LutMatrix {
    let kp = cols.div_ceil(8) * 8;
    let affine = |bits: u32| Grid::Affine {
        levels: (1 << bits) - 1,
    };
    let (bits, g, grid, zero, sup) = match t {
        Target::Q(bits, g) => (bits, g.min(kp), affine(bits), Zero::Affine, None),
        Target::K(bits) => {
            let g = K_GROUP.min(kp);
            (
                bits,
                g,
                affine(bits),
                Zero::Affine,
                Some(k_super(kp.div_ceil(g))),
            )
        }
        // absmean scale over the scope; codes q = clamp(round(w / s), -1, 1) + 1
        Target::Tq(scope) => {
            let (g, tensor) = match scope {
                Scope::Group(g) => (g.min(kp), None),
                Scope::Row => (kp, None),
                Scope::Tensor => (kp, Some(gptq::absmean(w.iter().copied()))),
            };
            (2, g, Grid::Ternary { tensor }, Zero::Offset(1), None)
        }
        _ => unreachable!("round_to_lut is called for the LUT types"),
    };
    let r = gptq::round_matrix(w, (rows, cols, g), (&grid, sup), sweep, imp);
    let (ng, ns) = (kp.div_ceil(g), kp.div_ceil(g).div_ceil(sup.unwrap_or(1)));
    let form = lut::Form {
        bits,
        group: g,
        zero,
        ternary: matches!(t, Target::Tq(_)),
        sup,
    };
    lut::pack_with(
        rows,
        cols,
        form,
        |row, c| r.codes[row * cols + c],
        |row, s| r.heads[row * ns + s],
        |row, grp| r.subs[row * ng + grp],
    )
}
