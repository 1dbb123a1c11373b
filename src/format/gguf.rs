//! GGUF reader (versions 2 and 3), over a byte slice (usually a memory map).
//!
//! Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata
//! key/values, the tensor infos (name, dims, type, offset), padding to `general.alignment`,
//! then the tensor data. Every count and size is checked against the bytes that are actually
//! there before anything is allocated, so a hostile header cannot make us allocate 2^40 items.

use super::reader::{mul, to_usize, Reader};
use crate::error::{Error, Result};
use crate::layout::ggml::GgmlType;
use std::collections::HashMap;

pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: u32 = 4;
const MAX_ARRAY_DEPTH: u32 = 4;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    /// GGUF strings are bytes; they are usually but not always UTF-8.
    Str(Vec<u8>),
    Array(Array),
}

/// Arrays are stored by element type, so a long array costs what it costs in the file
/// (a `Vec<Value>` would cost 24 bytes per u8).
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Str(Vec<Vec<u8>>),
    Nested(Vec<Array>),
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::Str(v) => v.len(),
            Array::Nested(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn strings(&self) -> Option<&[Vec<u8>]> {
        match self {
            Array::Str(v) => Some(v),
            _ => None,
        }
    }
    /// Element i of a numeric array as f32.
    pub fn f32_at(&self, i: usize) -> Option<f32> {
        Some(match self {
            Array::F32(v) => *v.get(i)?,
            Array::F64(v) => *v.get(i)? as f32,
            Array::I32(v) => *v.get(i)? as f32,
            Array::U32(v) => *v.get(i)? as f32,
            _ => return None,
        })
    }
    /// Element i of an integer array as i64.
    pub fn i64_at(&self, i: usize) -> Option<i64> {
        Some(match self {
            Array::U8(v) => *v.get(i)? as i64,
            Array::I8(v) => *v.get(i)? as i64,
            Array::U16(v) => *v.get(i)? as i64,
            Array::I16(v) => *v.get(i)? as i64,
            Array::U32(v) => *v.get(i)? as i64,
            Array::I32(v) => *v.get(i)? as i64,
            Array::U64(v) => i64::try_from(*v.get(i)?).ok()?,
            Array::I64(v) => *v.get(i)?,
            Array::Bool(v) => *v.get(i)? as i64,
            _ => return None,
        })
    }
    fn type_name(&self) -> &'static str {
        match self {
            Array::Str(_) => "string array",
            Array::F32(_) | Array::F64(_) => "float array",
            Array::Bool(_) => "bool array",
            Array::Nested(_) => "nested array",
            _ => "integer array",
        }
    }
}

/// GGUF's metadata value types, by their ids in the file: the one table the reader and the
/// writer share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    Str = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

/// (type, name, smallest encoded size of one value), in id order.
const VALUE_TYPES: [(ValueType, &str, u64); 13] = {
    use ValueType::*;
    [
        (U8, "u8", 1),
        (I8, "i8", 1),
        (U16, "u16", 2),
        (I16, "i16", 2),
        (U32, "u32", 4),
        (I32, "i32", 4),
        (F32, "f32", 4),
        (Bool, "bool", 1),
        (Str, "string", 8),
        (Array, "array", 12),
        (U64, "u64", 8),
        (I64, "i64", 8),
        (F64, "f64", 8),
    ]
};

impl ValueType {
    fn from_id(id: u32) -> Option<ValueType> {
        VALUE_TYPES.get(id as usize).map(|t| t.0)
    }
    pub(crate) fn id(self) -> u32 {
        self as u32
    }
    fn name(self) -> &'static str {
        VALUE_TYPES[self as usize].1
    }
    fn min_size(self) -> u64 {
        VALUE_TYPES[self as usize].2
    }
}

impl Array {
    pub(crate) fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::Str(_) => ValueType::Str,
            Array::Nested(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }
}

impl Value {
    pub(crate) fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::Str,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Array(a) => a.type_name(),
            v => v.value_type().name(),
        }
    }
    /// Any integer type, as u64 (negative values are None).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_u64().map(|v| v as f32),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (row length), `dims[1]` the number of rows.
    pub dims: Vec<u64>,
    pub typ: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    pub size: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// (rows, cols) of a matrix; a vector is one row.
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.dims[0] as usize;
        let rows = (self.n_elements() / self.dims[0].max(1)) as usize;
        (rows, cols)
    }
}

#[derive(Debug)]
pub struct Gguf {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    meta_index: HashMap<String, usize>,
    pub data_offset: usize,
}

impl Gguf {
    /// Parse the header of a GGUF file held in `buf`.
    pub fn parse(buf: &[u8]) -> Result<Gguf> {
        let mut r = Reader::new(buf);
        let magic = r.bytes(4, "magic")?;
        if magic != MAGIC {
            return Err(Error::format(format!(
                "not a GGUF file (magic {:02x?})",
                magic
            )));
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            return Err(Error::unsupported(format!(
                "GGUF version {version} is not supported (tmac reads versions 2 and 3)"
            )));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Every key/value takes at least 8 (key length) + 4 (type) bytes; every tensor info at
        // least 8 + 4 + 4 + 8. Checking this first bounds the allocations below by the file size.
        if n_kv > r.remaining() as u64 / 12 {
            return Err(Error::format(format!(
                "metadata count {n_kv} is larger than the file"
            )));
        }
        if n_tensors > r.remaining() as u64 / 24 {
            return Err(Error::format(format!(
                "tensor count {n_tensors} is larger than the file"
            )));
        }
        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::new();
        for i in 0..n_kv {
            let key = read_string(&mut r, "metadata key")?;
            let key = String::from_utf8(key)
                .map_err(|_| Error::format(format!("metadata key #{i} is not UTF-8")))?;
            let typ = r.u32("metadata type")?;
            let value = read_value(&mut r, typ, 0).map_err(|e| e.context(format!("key {key}")))?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::format(format!("duplicate metadata key {key}")));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v {
                Value::U32(a) if a.is_power_of_two() => *a as u64,
                _ => {
                    return Err(Error::format(format!(
                        "general.alignment must be a power of two u32, found {v:?}"
                    )))
                }
            },
        };

        let mut infos = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = read_string(&mut r, "tensor name")?;
            let name = String::from_utf8(name)
                .map_err(|_| Error::format(format!("tensor #{i}: name is not UTF-8")))?;
            let n_dims = r.u32("tensor dims")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::format(format!("tensor {name}: {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dim")?);
            }
            let type_id = r.u32("tensor type")?;
            let typ = GgmlType::from_id(type_id).ok_or_else(|| {
                Error::unsupported(format!("tensor {name}: unknown tensor type {type_id}"))
            })?;
            let offset = r.u64("tensor offset")?;
            infos.push((name, dims, typ, offset));
        }
        let header_end = r.pos() as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        if data_offset > buf.len() as u64 {
            return Err(Error::format("truncated: file ends before the tensor data"));
        }
        let data_len = buf.len() as u64 - data_offset;

        let mut tensors = Vec::with_capacity(infos.len());
        let mut index = HashMap::new();
        for (name, dims, typ, offset) in infos {
            let ctx = |e: Error| e.context(format!("tensor {name}"));
            let mut n = 1u64;
            for &d in &dims {
                if d == 0 {
                    return Err(ctx(Error::format("has a zero dimension")));
                }
                n = mul(n, d, "element count").map_err(ctx)?;
            }
            let size = if typ == GgmlType::I2S {
                // bitnet.cpp's I2_S: blocks of 128 over the whole tensor, then a 32-byte scale
                typ.tensor_bytes(n, dims[0]).ok_or_else(|| {
                    ctx(Error::format(format!(
                        "I2_S tensor of {n} elements is not a whole number of 128-element blocks"
                    )))
                })?
            } else {
                let row = typ.row_bytes(dims[0]).ok_or_else(|| {
                    ctx(Error::format(format!(
                        "row length {} is not a multiple of the {} block size {}",
                        dims[0],
                        typ.name(),
                        typ.block().0
                    )))
                })?;
                mul(row, n / dims[0], "byte size").map_err(ctx)?
            };
            if offset % alignment != 0 {
                return Err(ctx(Error::format(format!(
                    "data offset {offset} is not aligned to {alignment}"
                ))));
            }
            if offset > data_len || size > data_len - offset {
                return Err(ctx(Error::format(format!(
                    "data ({size} bytes at offset {offset}) lies outside the file \
                     ({data_len} bytes of tensor data)"
                ))));
            }
            let abs = to_usize(data_offset + offset, "offset").map_err(ctx)?;
            let size = to_usize(size, "size").map_err(ctx)?;
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::format(format!("duplicate tensor name {name}")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                typ,
                offset: abs,
                size,
            });
        }
        Ok(Gguf {
            version,
            alignment,
            metadata,
            tensors,
            index,
            meta_index,
            data_offset: data_offset as usize,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    // Typed getters: a missing key is None; a key of the wrong type is an error.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, Value::as_u64, "an unsigned integer")
    }
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, Value::as_f32, "a number")
    }
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, Value::as_str, "a UTF-8 string")
    }
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, Value::as_bool, "a bool")
    }
    pub fn get_array(&self, key: &str) -> Result<Option<&Array>> {
        self.typed(key, Value::as_array, "an array")
    }
    fn typed<'a, T>(
        &'a self,
        key: &str,
        f: impl Fn(&'a Value) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| {
                Error::format(format!(
                    "metadata {key} should be {what}, found {}",
                    v.type_name()
                ))
            }),
        }
    }
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.get_u64(key)?
            .ok_or_else(|| Error::format(format!("missing metadata key {key}")))
    }
}

fn read_string(r: &mut Reader, what: &str) -> Result<Vec<u8>> {
    let n = r.u64(what)?;
    if n > r.remaining() as u64 {
        return Err(Error::format(format!(
            "truncated: {what} of {n} bytes at offset {}, only {} left",
            r.pos(),
            r.remaining()
        )));
    }
    Ok(r.bytes(n as usize, what)?.to_vec())
}

fn read_value(r: &mut Reader, t: u32, depth: u32) -> Result<Value> {
    let t = ValueType::from_id(t)
        .ok_or_else(|| Error::format(format!("unknown metadata value type {t}")))?;
    Ok(match t {
        ValueType::U8 => Value::U8(r.u8("u8")?),
        ValueType::I8 => Value::I8(r.u8("i8")? as i8),
        ValueType::U16 => Value::U16(r.u16("u16")?),
        ValueType::I16 => Value::I16(r.u16("i16")? as i16),
        ValueType::U32 => Value::U32(r.u32("u32")?),
        ValueType::I32 => Value::I32(r.i32("i32")?),
        ValueType::F32 => Value::F32(r.f32("f32")?),
        ValueType::Bool => match r.u8("bool")? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return Err(Error::format(format!("bool value {b} is neither 0 nor 1"))),
        },
        ValueType::Str => Value::Str(read_string(r, "string")?),
        ValueType::Array => Value::Array(read_array(r, depth)?),
        ValueType::U64 => Value::U64(r.u64("u64")?),
        ValueType::I64 => Value::I64(r.u64("i64")? as i64),
        ValueType::F64 => Value::F64(r.f64("f64")?),
    })
}

fn read_array(r: &mut Reader, depth: u32) -> Result<Array> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(Error::format("arrays nested too deeply"));
    }
    let et = r.u32("array type")?;
    let n = r.u64("array length")?;
    let et = ValueType::from_id(et)
        .ok_or_else(|| Error::format(format!("unknown array element type {et}")))?;
    if n > r.remaining() as u64 / et.min_size() {
        return Err(Error::format(format!(
            "array of {n} elements does not fit in the {} bytes left",
            r.remaining()
        )));
    }
    let n = n as usize;
    macro_rules! collect {
        ($variant:ident, $read:expr) => {{
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push($read);
            }
            Array::$variant(v)
        }};
    }
    Ok(match et {
        ValueType::U8 => collect!(U8, r.u8("u8")?),
        ValueType::I8 => collect!(I8, r.u8("i8")? as i8),
        ValueType::U16 => collect!(U16, r.u16("u16")?),
        ValueType::I16 => collect!(I16, r.u16("i16")? as i16),
        ValueType::U32 => collect!(U32, r.u32("u32")?),
        ValueType::I32 => collect!(I32, r.i32("i32")?),
        ValueType::F32 => collect!(F32, r.f32("f32")?),
        ValueType::Bool => collect!(Bool, r.u8("bool")? != 0),
        ValueType::Str => collect!(Str, read_string(r, "string")?),
        ValueType::Array => collect!(Nested, read_array(r, depth + 1)?),
        ValueType::U64 => collect!(U64, r.u64("u64")?),
        ValueType::I64 => collect!(I64, r.u64("i64")? as i64),
        ValueType::F64 => collect!(F64, r.f64("f64")?),
    })
}
