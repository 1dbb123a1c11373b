//! tmac's own model file: a GGUF container (general.*, tokenizer.* and architecture keys as in
//! any GGUF) whose matrices are stored already in kernel layout, 64-byte aligned, so a load maps
//! the file and uses them in place: no copy, no repacking.
//!
//! A LUT matrix `<name>` is two I8 tensors, `<name>` (codes) and `<name>.scales`, described by
//! `tmac.lut.<name>` = [rows, cols, bits, group, zero kind (0 affine, 1 offset), zero offset,
//! ternary], followed for K-quant scales by the groups per super-block. A codebook matrix
//! (IQ4_NL, IQ4_XS) is `<name>`, its GGUF blocks as they are, described by `tmac.iq4.<name>` =
//! [rows, cols, ggml type id]. An 8-bit matrix is `<name>` (int8 values) and `<name>.scales` (f16 per 32),
//! described by `tmac.q8.<name>` = [rows, cols]. Everything else is plain GGUF.

use super::gguf::{Array, Value};
use super::gguf_write::GgufWriter;
use super::tensors::Loader;
use crate::error::{Error, Result};
use crate::layout::ggml::GgmlType;
use crate::layout::iq4::Iq4Matrix;
use crate::layout::linear::Linear;
use crate::layout::lut::{Form, LutMatrix, Zero};
use crate::layout::q8::Q8Matrix;

pub(crate) const ALIGNMENT: u64 = 64;
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Read the description array `key` as u32 values, `n` of them (or one more if `optional`).
fn desc(l: &Loader, key: &str, n: usize, optional: bool) -> Result<Option<Vec<u32>>> {
    let Some(a) = l.g.get_array(key)? else {
        return Ok(None);
    };
    let v: Option<Vec<u32>> = (0..a.len())
        .map(|i| a.i64_at(i).and_then(|x| u32::try_from(x).ok()))
        .collect();
    match v {
        Some(v) if v.len() == n || (optional && v.len() == n + 1) => Ok(Some(v)),
        _ => Err(Error::format(format!(
            "{key} should be {n} unsigned integers"
        ))),
    }
}

/// The I8 tensor `name`, as a zero-copy blob.
fn raw(l: &Loader, name: &str) -> Result<crate::bytes::Blob> {
    let t = l.info(name)?;
    if t.typ != GgmlType::I8 || t.dims.len() != 1 {
        return Err(Error::format(format!(
            "tensor {name} should be a 1-D I8 tensor of kernel data"
        )));
    }
    Ok(l.mapped(t))
}

/// The matrix `name` stored in kernel layout, if the file has it so.
pub(crate) fn read_matrix(
    l: &Loader,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<Option<Linear>> {
    let ctx = |e: Error| e.context(format!("tensor {name}"));
    let shape_err = |r: u32, c: u32| {
        Error::format(format!(
            "tensor {name}: layout says {r}x{c}, the model needs {rows}x{cols}"
        ))
    };
    if let Some(v) = desc(l, &format!("tmac.lut.{name}"), 7, true)? {
        if (v[0] as usize, v[1] as usize) != (rows, cols) {
            return Err(shape_err(v[0], v[1]));
        }
        let zero = match v[4] {
            0 => Zero::Affine,
            1 if v[5] < 64 => Zero::Offset(v[5]),
            _ => {
                return Err(Error::format(format!(
                    "tensor {name}: unknown zero-point kind {} {}",
                    v[4], v[5]
                )))
            }
        };
        let form = Form {
            bits: v[2],
            group: v[3] as usize,
            zero,
            ternary: v[6] != 0,
            sup: v.get(7).map(|&n| n as usize),
        };
        let data = raw(l, name)?;
        let scales = raw(l, &format!("{name}.scales"))?;
        let m = LutMatrix::new(rows, cols, form, data, scales).map_err(ctx)?;
        return Ok(Some(Linear::Lut(m)));
    }
    if let Some(v) = desc(l, &format!("tmac.q8.{name}"), 2, false)? {
        if (v[0] as usize, v[1] as usize) != (rows, cols) {
            return Err(shape_err(v[0], v[1]));
        }
        let m = Q8Matrix::new(
            rows,
            cols,
            raw(l, name)?,
            Some(raw(l, &format!("{name}.scales"))?),
        )
        .map_err(ctx)?;
        return Ok(Some(Linear::Q8(m)));
    }
    if let Some(v) = desc(l, &format!("tmac.iq4.{name}"), 3, false)? {
        if (v[0] as usize, v[1] as usize) != (rows, cols) {
            return Err(shape_err(v[0], v[1]));
        }
        let typ = GgmlType::from_id(v[2])
            .ok_or_else(|| Error::format(format!("tensor {name}: unknown type id {}", v[2])))?;
        let m = Iq4Matrix::new(rows, cols, typ, raw(l, name)?).map_err(ctx)?;
        return Ok(Some(Linear::Iq4(m)));
    }
    Ok(None)
}

/// Order a tmac file's tensors for mapping: the kernel-layout weight data first, then all that a
/// load reads (scales, norms, other f32 tensors). Kept apart, the pages the kernel maps around
/// what a load reads (fault-around, large page-cache folios) hold no weight data, so loading
/// really does not pull the weights into memory.
pub(crate) fn order_for_mapping(w: &mut GgufWriter) {
    let is_weight_data = |t: &super::gguf_write::TensorData| {
        t.type_id == GgmlType::I8.id() && !t.name.ends_with(".scales")
    };
    w.tensors.sort_by_key(|t| !is_weight_data(t)); // false (weight data) sorts first
}

/// Add a matrix to a tmac file being written.
pub(crate) fn add_matrix(w: &mut GgufWriter, name: &str, m: &Linear) {
    let u = |v: &[usize]| Value::Array(Array::U32(v.iter().map(|&x| x as u32).collect()));
    match m {
        Linear::Lut(m) => {
            let (kind, off) = match m.zero {
                Zero::Affine => (0, 0),
                Zero::Offset(o) => (1, o as usize),
            };
            let mut d = vec![
                m.rows,
                m.cols,
                m.bits as usize,
                m.group,
                kind,
                off,
                m.ternary as usize,
            ];
            d.extend(m.sup);
            w.set(&format!("tmac.lut.{name}"), u(&d));
            w.add_tensor(
                name,
                &[m.data.len() as u64],
                GgmlType::I8.id(),
                m.data.as_slice().to_vec(),
            );
            w.add_tensor(
                &format!("{name}.scales"),
                &[m.scales.len() as u64],
                GgmlType::I8.id(),
                m.scales.as_slice().to_vec(),
            );
        }
        Linear::Q8(m) => {
            w.set(&format!("tmac.q8.{name}"), u(&[m.rows, m.cols]));
            // always written in tmac's split layout
            let (q, _) = m.parts();
            let st = m.strides();
            let nb = m.rows * m.cols / 32;
            let mut vals = Vec::with_capacity(m.rows * m.cols);
            let mut scales = Vec::with_capacity(nb * 2);
            for b in 0..nb {
                vals.extend_from_slice(&q[b * st.q_stride + st.q_skip..][..32]);
                scales.extend_from_slice(&half::f16::from_f32(m.block_scale(b)).to_le_bytes());
            }
            w.add_tensor(name, &[vals.len() as u64], GgmlType::I8.id(), vals);
            w.add_tensor(
                &format!("{name}.scales"),
                &[scales.len() as u64],
                GgmlType::I8.id(),
                scales,
            );
        }
        Linear::Iq4(m) => {
            w.set(
                &format!("tmac.iq4.{name}"),
                u(&[m.rows, m.cols, m.typ.id() as usize]),
            );
            let data = m.data.as_slice().to_vec();
            w.add_tensor(name, &[data.len() as u64], GgmlType::I8.id(), data);
        }
        Linear::F32 { rows, cols, w: v } => w.add_f32(name, &[*cols as u64, *rows as u64], v),
    }
}
