//! The files of the original Mojo T-MAC engine, and the llama2.c checkpoints they were made
//! from: T-MAC v1 (`.tmac.bin`, magic "TMAC"), T-MAC v2 (`.tmac2.bin`, "TM2\0") and the int4
//! baseline (`.q4.bin`, "Q4V1"). Byte layouts: legacy-formats.md sections 1-5.
//!
//! `parse` locates every tensor of the fixed llama2.c order and checks every size against the
//! file before anything is read: the header's shape, v2 records' flags and dimensions, the
//! Q4V1 block size, and that the file ends exactly where the last tensor does. The decoders
//! below read single codes; the model loader (model/legacy.rs) builds matrices from them and
//! the writers live in quant/legacy.rs.

use super::llama2c::{self, Header, Role, TensorSpec, HEADER_BYTES};
use super::reader::Reader;
use super::Kind;
use crate::error::{Error, Result};
use half::f16;

pub(crate) use super::{MAGIC_Q4, MAGIC_V1, MAGIC_V2};
/// Q4V1: elements per block, bytes per block (f16 scale + 16 bytes of nibbles).
pub(crate) const Q4_BLOCK: usize = 32;
pub(crate) const Q4_BLOCK_BYTES: usize = 18;

/// How one tensor's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Raw little-endian f32.
    F32,
    /// v1: 2-bit codes of the whole stacked tensor, flat, 4 per byte, no scale.
    Ternary,
    /// v2: for each stacked row, an f16 scale then ceil(cols/4) bytes of 2-bit codes.
    TernaryRows,
    /// Q4V1: the flattened tensor in blocks of 32 (f16 scale, then 16 bytes of nibbles).
    Q4Blocks,
}

/// A tensor located in the file: its shape and its data bytes `start..start + len` (after any
/// record flag and dimensions).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tensor {
    pub spec: TensorSpec,
    pub storage: Storage,
    pub start: usize,
    pub len: usize,
}

impl Tensor {
    pub(crate) fn data<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        &file[self.start..self.start + self.len]
    }
}

pub(crate) struct LegacyFile {
    pub header: Header,
    pub tensors: Vec<Tensor>,
}

impl LegacyFile {
    pub(crate) fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.spec.name == name)
    }
}

/// Bytes of a v2 row: f16 scale + packed codes.
pub(crate) fn v2_row_bytes(cols: usize) -> usize {
    2 + cols.div_ceil(4)
}

/// Bytes a tensor takes in `kind` (without v2/Q4V1 record headers); None on overflow.
fn stored_bytes(kind: Kind, t: &TensorSpec) -> Option<u64> {
    let n = llama2c::n_u64(t)?;
    Some(match (kind, t.role) {
        (_, Role::Float) | (Kind::Llama2c, _) => n.checked_mul(4)?,
        (Kind::TmacV1, Role::Matrix) => n.div_ceil(4),
        (Kind::TmacV2, Role::Matrix) => {
            (t.stacked_rows() as u64).checked_mul(v2_row_bytes(t.cols) as u64)?
        }
        (_, Role::Matrix) => n.div_ceil(Q4_BLOCK as u64) * Q4_BLOCK_BYTES as u64,
    })
}

fn storage_of(kind: Kind, role: Role) -> Storage {
    match (kind, role) {
        (_, Role::Float) | (Kind::Llama2c, _) => Storage::F32,
        (Kind::TmacV1, _) => Storage::Ternary,
        (Kind::TmacV2, _) => Storage::TernaryRows,
        _ => Storage::Q4Blocks,
    }
}

/// Locate every tensor of a legacy file of kind `kind` (as `format::detect` found it).
pub(crate) fn parse(kind: Kind, buf: &[u8]) -> Result<LegacyFile> {
    let magic = match kind {
        Kind::Llama2c => 0,
        Kind::TmacV1 | Kind::TmacV2 | Kind::Q4V1 => 4,
        Kind::Gguf => return Err(Error::invalid("a GGUF file is not a legacy file")),
    };
    let header = Header::parse(buf.get(magic..).unwrap_or_default())?;
    let specs = header.tensors();
    let mut r = Reader::at(buf, magic + HEADER_BYTES);
    if kind == Kind::Q4V1 {
        let bs = r.i32("Q4V1 block_size")?;
        if bs != Q4_BLOCK as i32 {
            return Err(Error::format(format!(
                "Q4V1 block_size is {bs}; the format defines only {Q4_BLOCK}"
            )));
        }
    }
    let records = matches!(kind, Kind::TmacV2 | Kind::Q4V1);
    if !records {
        // fixed layout: the header alone gives every size
        let need = header
            .payload_bytes(|t| stored_bytes(kind, t))
            .and_then(|n| n.checked_add(r.pos() as u64))
            .ok_or_else(|| Error::format("header: tensor sizes overflow"))?;
        if need != buf.len() as u64 {
            return Err(Error::format(format!(
                "{}the header ({}) implies {need} bytes, the file has {}",
                if need > buf.len() as u64 {
                    "truncated: "
                } else {
                    ""
                },
                header.describe(),
                buf.len()
            )));
        }
    }
    let mut tensors = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let name = spec.name;
        if records {
            let want = (spec.role == Role::Matrix) as u8;
            let flag = r.u8(&format!("tensor {name}: record flag"))?;
            if flag != want {
                let hint = if kind == Kind::TmacV2 && i == 1 && flag == 1 {
                    " (the per-layer \"TM2-BitNet\" layout of convert_bitnet_to_tmac.py is not supported)"
                } else {
                    ""
                };
                return Err(Error::format(format!(
                    "tensor {name}: record flag is {flag}, expected {want} ({}){hint}",
                    if want == 1 { "quantized" } else { "float32" }
                )));
            }
            if kind == Kind::TmacV2 && spec.role == Role::Matrix {
                let rows = r.i32(&format!("tensor {name}: rows"))?;
                let cols = r.i32(&format!("tensor {name}: cols"))?;
                if rows as i64 != spec.stacked_rows() as i64 || cols as i64 != spec.cols as i64 {
                    return Err(Error::format(format!(
                        "tensor {name}: record says {rows} x {cols}, the header implies {} x {}",
                        spec.stacked_rows(),
                        spec.cols
                    )));
                }
            }
        }
        let len = stored_bytes(kind, spec)
            .ok_or_else(|| Error::format(format!("tensor {name}: size overflows")))?;
        if len > r.remaining() as u64 {
            return Err(Error::format(format!(
                "truncated: tensor {name} needs {len} bytes at offset {}, only {} left",
                r.pos(),
                r.remaining()
            )));
        }
        let start = r.pos();
        r.bytes(len as usize, name)?;
        tensors.push(Tensor {
            spec: *spec,
            storage: storage_of(kind, spec.role),
            start,
            len: len as usize,
        });
    }
    if r.remaining() != 0 {
        return Err(Error::format(format!(
            "{} bytes follow the last tensor ({})",
            r.remaining(),
            specs.last().map_or("", |s| s.name)
        )));
    }
    Ok(LegacyFile { header, tensors })
}

/// f32 number `i` of raw f32 data.
pub(crate) fn f32_at(data: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([
        data[4 * i],
        data[4 * i + 1],
        data[4 * i + 2],
        data[4 * i + 3],
    ])
}

/// The ternary value of element `e` of packed 2-bit codes, as the code q = w + 1 in {0, 1, 2}.
/// Codes 00 = 0, 01 = +1, 11 = -1; 10 is never written and decodes as -1, as in every decoder
/// of the original.
pub(crate) fn ternary_q(packed: &[u8], e: usize) -> u8 {
    match (packed[e / 4] >> (2 * (e % 4))) & 3 {
        0 => 1,
        1 => 2,
        _ => 0,
    }
}

/// The f16 scale of v2 stacked row `row`, and that row's packed codes.
pub(crate) fn v2_row(data: &[u8], cols: usize, row: usize) -> (f16, &[u8]) {
    let rb = v2_row_bytes(cols);
    let r = &data[row * rb..(row + 1) * rb];
    (f16::from_le_bytes([r[0], r[1]]), &r[2..])
}

/// Q4V1: (scale, nibble in 0..16) of element `e` of the flattened tensor. Byte i of a block
/// holds element 2i in its low nibble and 2i + 1 in its high nibble.
pub(crate) fn q4_at(blocks: &[u8], e: usize) -> (f16, u8) {
    let b = &blocks[e / Q4_BLOCK * Q4_BLOCK_BYTES..][..Q4_BLOCK_BYTES];
    let j = e % Q4_BLOCK;
    let byte = b[2 + j / 2];
    (
        f16::from_le_bytes([b[0], b[1]]),
        if j.is_multiple_of(2) {
            byte & 15
        } else {
            byte >> 4
        },
    )
}
