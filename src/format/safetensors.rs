//! Safetensors reader, over a byte slice (usually a memory map).
//!
//! Layout: u64 little-endian header length N, N bytes of JSON (`{"name": {"dtype": "BF16",
//! "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`), then the data; offsets
//! are relative to the end of the header. Every offset and size is checked against the file.

use super::json::Json;
use super::reader::{mul, to_usize, Reader};
use crate::error::{Error, Result};
use half::{bf16, f16};
use std::collections::HashMap;

/// Largest header tmac reads (the format's own readers cap it at 100 MB).
const MAX_HEADER: u64 = 100 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_name(s: &str) -> Option<Dtype> {
        Some(match s {
            "F64" => Dtype::F64,
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "I16" => Dtype::I16,
            "I8" => Dtype::I8,
            "U8" => Dtype::U8,
            "BOOL" => Dtype::Bool,
            _ => return None,
        })
    }
    pub(crate) fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }
    pub(crate) fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    /// Outermost first (row-major): a weight is [rows, cols].
    pub shape: Vec<u64>,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    pub size: usize,
}

impl Tensor {
    pub(crate) fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

pub(crate) struct Safetensors {
    pub tensors: Vec<Tensor>,
    index: HashMap<String, usize>,
}

impl Safetensors {
    /// Parse the header of a safetensors file held in `buf`.
    pub(crate) fn parse(buf: &[u8]) -> Result<Safetensors> {
        let mut r = Reader::new(buf);
        let n = r.u64("header length")?;
        if n > r.remaining() as u64 || n > MAX_HEADER {
            return Err(Error::format(format!(
                "safetensors header of {n} bytes does not fit in the file ({} bytes)",
                buf.len()
            )));
        }
        let header = Json::parse(r.bytes(n as usize, "header")?)
            .map_err(|e| e.context("safetensors header"))?;
        let data_start = 8 + n as usize;
        let data_len = (buf.len() - data_start) as u64;
        let members = header
            .as_object()
            .ok_or_else(|| Error::format("safetensors header is not a JSON object"))?;
        let mut tensors = Vec::new();
        let mut index = HashMap::new();
        for (name, info) in members {
            if name == "__metadata__" {
                continue;
            }
            let ctx = |e: Error| e.context(format!("tensor {name}"));
            let bad = |what: &str| ctx(Error::format(what.to_string()));
            let dtype = info
                .get("dtype")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("no dtype"))?;
            let dtype = Dtype::from_name(dtype)
                .ok_or_else(|| ctx(Error::unsupported(format!("dtype {dtype}"))))?;
            let shape: Vec<u64> = info
                .get("shape")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("no shape"))?
                .iter()
                .map(Json::as_u64)
                .collect::<Option<_>>()
                .ok_or_else(|| bad("shape is not a list of sizes"))?;
            let offs = info
                .get("data_offsets")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("no data_offsets"))?;
            let (begin, end) = match offs {
                [a, b] => (
                    a.as_u64().ok_or_else(|| bad("bad data_offsets"))?,
                    b.as_u64().ok_or_else(|| bad("bad data_offsets"))?,
                ),
                _ => return Err(bad("data_offsets is not [begin, end]")),
            };
            if begin > end || end > data_len {
                return Err(bad(&format!(
                    "data [{begin}, {end}) lies outside the file ({data_len} bytes of data)"
                )));
            }
            let mut size = dtype.size();
            for &d in &shape {
                size = mul(size, d, "tensor size").map_err(ctx)?;
            }
            if size != end - begin {
                return Err(bad(&format!(
                    "{} bytes of data for shape {shape:?} of {dtype:?} ({size} bytes)",
                    end - begin
                )));
            }
            let offset = to_usize(data_start as u64 + begin, "offset").map_err(ctx)?;
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::format(format!("duplicate tensor name {name}")));
            }
            tensors.push(Tensor {
                name: name.clone(),
                dtype,
                shape,
                offset,
                size: size as usize,
            });
        }
        Ok(Safetensors { tensors, index })
    }

    pub(crate) fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }
}

/// The values of a float tensor (F32, F16 or BF16) as f32.
pub(crate) fn floats(t: &Tensor, data: &[u8]) -> Result<Vec<f32>> {
    let d = &data[t.offset..t.offset + t.size];
    Ok(match t.dtype {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::unsupported(format!(
                "tensor {}: {other:?} where a float tensor is expected",
                t.name
            )))
        }
    })
}
