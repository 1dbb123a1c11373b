//! Quantizers from f32 to tmac's weight types (`Target`): a matrix of floats in, a `Linear` in
//! kernel layout out. `convert::quantize` applies them to whole files.

use super::linear::Linear;
use super::lut::{self, Zero};
use super::q8::Q8Matrix;
use crate::error::{Error, Result};
use half::f16;

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

/// Quantize a row-major (rows, cols) f32 matrix.
pub fn quantize_matrix(t: Target, rows: usize, cols: usize, w: &[f32]) -> Result<Linear> {
    let kp = cols.div_ceil(8) * 8;
    let at = |r: usize, c: usize| w[r * cols + c];
    let h = f16::from_f32;
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
        Target::Q(bits, g) => {
            let levels = ((1u32 << bits) - 1) as f32;
            let g = g.min(kp);
            let ng = kp.div_ceil(g);
            // (d, m) per (row, group) as stored (f16), then codes against the stored values
            let mut dm = Vec::with_capacity(rows * ng);
            for r in 0..rows {
                for grp in 0..ng {
                    let span = (grp * g).min(cols)..((grp + 1) * g).min(cols);
                    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                    for c in span {
                        lo = lo.min(at(r, c));
                        hi = hi.max(at(r, c));
                    }
                    if lo > hi {
                        (lo, hi) = (0.0, 0.0);
                    }
                    dm.push((h((hi - lo) / levels), h(lo)));
                }
            }
            let code = |r: usize, c: usize| {
                let (d, m) = dm[r * ng + c / g];
                let (d, m) = (d.to_f32(), m.to_f32());
                if d == 0.0 {
                    0
                } else {
                    ((at(r, c) - m) / d).round().clamp(0.0, levels) as u8
                }
            };
            Linear::Lut(lut::pack(
                rows,
                cols,
                bits,
                g,
                Zero::Affine,
                false,
                code,
                |r, grp| dm[r * ng + grp],
            ))
        }
        Target::Tq(scope) => {
            // absmean scale over the scope; codes q = clamp(round(w / s), -1, 1) + 1
            let g = match scope {
                Scope::Group(g) => g.min(kp),
                _ => kp,
            };
            let ng = kp.div_ceil(g);
            let absmean = |vals: &mut dyn Iterator<Item = f32>| {
                let (s, n) = vals.fold((0f64, 0usize), |(s, n), v| (s + v.abs() as f64, n + 1));
                h((s / n.max(1) as f64) as f32 + 1e-6)
            };
            let tensor_scale = absmean(&mut w.iter().copied());
            let mut scales = Vec::with_capacity(rows * ng);
            for r in 0..rows {
                for grp in 0..ng {
                    scales.push(match scope {
                        Scope::Tensor => tensor_scale,
                        Scope::Row => absmean(&mut (0..cols).map(|c| at(r, c))),
                        Scope::Group(_) => absmean(
                            &mut ((grp * g).min(cols)..((grp + 1) * g).min(cols)).map(|c| at(r, c)),
                        ),
                    });
                }
            }
            let code = |r: usize, c: usize| {
                let s = scales[r * ng + c / g].to_f32();
                ((at(r, c) / s).round().clamp(-1.0, 1.0) + 1.0) as u8
            };
            Linear::Lut(lut::pack(
                rows,
                cols,
                2,
                g,
                Zero::Offset(1),
                true,
                code,
                |r, grp| (scales[r * ng + grp], f16::ZERO),
            ))
        }
    })
}
