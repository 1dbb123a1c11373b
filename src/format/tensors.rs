//! A GGUF file's tensors by name, for a model load or a conversion: shapes checked before any
//! data is touched, fused matrices read as their parts, and what was never asked for listed.

use crate::bytes::{Blob, Bytes};
use crate::error::{Error, Result};
use crate::format::gguf::{Gguf, TensorInfo};
use crate::layout::ggml::{dequantize, GgmlType};
use crate::layout::linear::Linear;
use crate::layout::ternary;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

/// Looks tensors up by name and checks their shapes before any data is touched. Fused
/// matrices (Phi-3's attn_qkv and gate+up ffn_up) are looked up as their parts, each a band of
/// rows of the fused tensor; every tensor looked up is recorded, so a load can refuse a file
/// with tensors it did not use.
pub(crate) struct Loader<'a> {
    pub g: &'a Gguf,
    pub file: &'a [u8],
    pub bytes: &'a Arc<Bytes>,
    /// (part, the fused tensor it is cut from)
    parts: Vec<(TensorInfo, String)>,
    used: RefCell<HashSet<String>>,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(g: &'a Gguf, file: &'a [u8], bytes: &'a Arc<Bytes>) -> Loader<'a> {
        Loader {
            g,
            file,
            bytes,
            parts: Vec::new(),
            used: RefCell::new(HashSet::new()),
        }
    }

    /// Make `names` (each with its row count) the consecutive row bands of the matrix
    /// `fused` (cols wide), if the file has it. The parts replace tensors of the same name.
    pub(crate) fn split(
        &mut self,
        fused: &str,
        cols: usize,
        names: &[(&str, usize)],
    ) -> Result<()> {
        let Some(t) = self.g.tensor(fused) else {
            return Ok(());
        };
        let rows: usize = names.iter().map(|n| n.1).sum();
        self.shaped(fused, rows, cols)?;
        let row_bytes = t
            .typ
            .row_bytes(cols as u64)
            .filter(|_| t.typ != GgmlType::I2S);
        let row_bytes = row_bytes.ok_or_else(|| {
            Error::unsupported(format!(
                "tensor {fused}: a fused {} matrix cannot be split",
                t.typ.name()
            ))
        })? as usize;
        let mut r0 = 0;
        for &(name, n) in names {
            let part = TensorInfo {
                name: name.to_string(),
                dims: vec![cols as u64, n as u64],
                typ: t.typ,
                offset: t.offset + r0 * row_bytes,
                size: n * row_bytes,
            };
            self.parts.retain(|(p, _)| p.name != name);
            self.parts.push((part, fused.to_string()));
            r0 += n;
        }
        Ok(())
    }

    pub(crate) fn info(&self, name: &str) -> Result<&TensorInfo> {
        let (t, source) = match self.parts.iter().find(|(p, _)| p.name == name) {
            Some((p, fused)) => (Some(p), fused.as_str()),
            None => (self.g.tensor(name), name),
        };
        let t = t.ok_or_else(|| Error::format(format!("missing tensor {name}")))?;
        self.used.borrow_mut().insert(source.to_string());
        Ok(t)
    }

    /// Is `name` a fused tensor that is read as parts?
    pub(crate) fn is_fused(&self, name: &str) -> bool {
        self.parts.iter().any(|(_, f)| f == name)
    }

    /// Is there a tensor `name` (a part of a fused one included)?
    pub(crate) fn has(&self, name: &str) -> bool {
        self.parts.iter().any(|(p, _)| p.name == name) || self.g.tensor(name).is_some()
    }

    /// Tensors of the file that no lookup asked for.
    pub(crate) fn unused(&self) -> Vec<&str> {
        let used = self.used.borrow();
        self.g
            .tensors
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| !used.contains(*n))
            .collect()
    }

    /// Check that `name` is a (rows, cols) matrix (or a vector when rows == 1).
    pub(crate) fn shaped(&self, name: &str, rows: usize, cols: usize) -> Result<&TensorInfo> {
        let t = self.info(name)?;
        let want: &[u64] = if rows == 1 {
            &[cols as u64]
        } else {
            &[cols as u64, rows as u64]
        };
        let dims: Vec<u64> = t.dims.iter().copied().filter(|&d| d != 1).collect();
        let want: Vec<u64> = want.iter().copied().filter(|&d| d != 1).collect();
        if dims != want {
            return Err(Error::format(format!(
                "tensor {name} has shape {:?}, expected {:?}",
                t.dims,
                [cols, rows]
            )));
        }
        Ok(t)
    }

    pub(crate) fn data(&self, t: &TensorInfo) -> &'a [u8] {
        &self.file[t.offset..t.offset + t.size]
    }

    /// The tensor as f32, whatever its type.
    pub(crate) fn f32s(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        let mut out = vec![0f32; t.n_elements() as usize];
        dequantize(t.typ, self.data(t), &mut out)
            .map_err(|e| e.context(format!("tensor {}", t.name)))?;
        Ok(out)
    }

    /// The factor in llama.cpp's optional `<matrix>.scale` tensor (1 element), or 1.
    pub(crate) fn scale_factor(&self, matrix: &str) -> Result<f32> {
        let name = ternary::scale_name(matrix);
        if !self.has(&name) {
            return Ok(1.0);
        }
        Ok(self.vector(&name, 1)?[0])
    }

    pub(crate) fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let v = self.f32s(self.shaped(name, 1, n)?)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::format(format!(
                "tensor {name}: element {i} is {}",
                v[i]
            )));
        }
        Ok(v)
    }
}

impl<'a> Loader<'a> {
    /// The GGUF tensor `name` as a (rows, cols) matrix of a type tmac can read.
    pub(crate) fn ggml_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<&TensorInfo> {
        let t = self.shaped(name, rows, cols)?;
        if !t.typ.can_dequantize() {
            return Err(Error::unsupported(format!(
                "tensor {name} has type {}, which tmac cannot read",
                t.typ.name()
            )));
        }
        Ok(t)
    }

    /// A tensor's bytes as a zero-copy view of the file.
    pub(crate) fn mapped(&self, t: &TensorInfo) -> Blob {
        Blob::Mapped {
            bytes: self.bytes.clone(),
            start: t.offset,
            len: t.size,
        }
    }

    /// The matrix `name` if this is a tmac file that stores it in kernel layout (zero-copy).
    pub(crate) fn tmac_matrix(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<Linear>> {
        super::tmacfile::read_matrix(self, name, rows, cols)
    }
}
