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
    /// 8-bit, blocks of 32 with one scale.
    Q8,
    F32,
}

impl Target {
    /// Parse a `--type` name with its `--group` and `--scale` options.
    pub fn parse(name: &str, group: usize, scale: &str) -> Result<Target> {
        if group == 0 || group % 8 != 0 {
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
            "q8" => Target::Q8,
            "f32" => Target::F32,
            t => {
                return Err(Error::invalid(format!(
                    "unknown type '{t}' (tq, q1, q2, q3, q4, q8, f32)"
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
            Target::Q8 => "q8".into(),
            Target::F32 => "f32".into(),
        }
    }
}

/// Quantize a row-major (rows, cols) f32 matrix, each weight to its nearest code.
pub fn quantize_matrix(t: Target, rows: usize, cols: usize, w: &[f32]) -> Result<Linear> {
    Ok(match t {
        Target::F32 => Linear::F32 {
            rows,
            cols,
            w: w.to_vec(),
        },
        Target::Q8 if cols % 32 == 0 => Linear::Q8(Q8Matrix::quantize(rows, cols, w)?),
        Target::Q8 => Linear::F32 {
            rows,
            cols,
            w: w.to_vec(),
        },
        Target::Q(..) | Target::Tq(_) => {
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
        Target::Q(..) | Target::Tq(_) => Ok(Linear::Lut(round_to_lut(
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
    let (bits, g, grid, zero) = match t {
        Target::Q(bits, g) => (
            bits,
            g.min(kp),
            Grid::Affine {
                levels: (1 << bits) - 1,
            },
            Zero::Affine,
        ),
        // absmean scale over the scope; codes q = clamp(round(w / s), -1, 1) + 1
        Target::Tq(scope) => {
            let (g, tensor) = match scope {
                Scope::Group(g) => (g.min(kp), None),
                Scope::Row => (kp, None),
                Scope::Tensor => (kp, Some(gptq::absmean(w.iter().copied()))),
            };
            (2, g, Grid::Ternary { tensor }, Zero::Offset(1))
        }
        _ => unreachable!("round_to_lut is called for the LUT types"),
    };
    let (codes, params) = gptq::round_matrix(w, (rows, cols, g), &grid, sweep, imp);
    let ng = kp.div_ceil(g);
    lut::pack(
        rows,
        cols,
        bits,
        g,
        zero,
        matches!(t, Target::Tq(_)),
        |r, c| codes[r * cols + c],
        |r, grp| params[r * ng + grp],
    )
}
