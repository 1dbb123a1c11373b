//! GGUF writer (version 3): tmac's own model files and the test corpus are written with it.

use super::gguf::{Array, Value};
use std::io::{self, Write};

pub struct TensorData {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

pub struct GgufWriter {
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorData>,
}

impl GgufWriter {
    pub fn new(alignment: u64) -> GgufWriter {
        let mut w = GgufWriter {
            alignment,
            metadata: Vec::new(),
            tensors: Vec::new(),
        };
        if alignment != super::gguf::DEFAULT_ALIGNMENT {
            w.set("general.alignment", Value::U32(alignment as u32));
        }
        w
    }

    /// Set (or replace) a metadata key.
    pub fn set(&mut self, key: &str, v: Value) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = v,
            None => self.metadata.push((key.to_string(), v)),
        }
    }
    pub fn set_str(&mut self, key: &str, s: &str) {
        self.set(key, Value::Str(s.as_bytes().to_vec()));
    }

    pub fn add_tensor(&mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) {
        self.tensors.push(TensorData {
            name: name.to_string(),
            dims: dims.to_vec(),
            type_id,
            data,
        });
    }

    pub fn add_f32(&mut self, name: &str, dims: &[u64], v: &[f32]) {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_tensor(name, dims, 0, data);
    }

    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let lens: Vec<u64> = self.tensors.iter().map(|t| t.data.len() as u64).collect();
        out.write_all(&self.header(&lens))?;
        for t in &self.tensors {
            out.write_all(&t.data)?;
            out.write_all(&vec![0u8; self.pad(t.data.len() as u64)])?;
        }
        Ok(())
    }

    /// The file's bytes, releasing each tensor's buffer once it is copied (for large models
    /// built in memory: the peak is about one copy of the data, not two).
    pub fn into_bytes(mut self) -> Vec<u8> {
        let lens: Vec<u64> = self.tensors.iter().map(|t| t.data.len() as u64).collect();
        let mut out = self.header(&lens);
        let total: u64 = lens.iter().map(|&n| n + self.pad(n) as u64).sum();
        out.reserve(total as usize);
        for t in std::mem::take(&mut self.tensors) {
            out.extend_from_slice(&t.data);
            out.resize(out.len() + self.pad(t.data.len() as u64), 0);
        }
        out
    }

    /// Zero bytes that follow `n` bytes of tensor data.
    fn pad(&self, n: u64) -> usize {
        (n.div_ceil(self.alignment) * self.alignment - n) as usize
    }

    /// Header (magic through padding) for tensors of the given data lengths.
    fn header(&self, lens: &[u64]) -> Vec<u8> {
        let mut head = Vec::new();
        head.extend_from_slice(super::gguf::MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut head, k.as_bytes());
            head.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0u64;
        for (t, &len) in self.tensors.iter().zip(lens) {
            put_str(&mut head, t.name.as_bytes());
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.type_id.to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset += len + self.pad(len) as u64;
        }
        let n = head.len() as u64;
        head.resize(head.len() + self.pad(n), 0);
        head
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.element_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr, $f:expr) => {
            for x in $v {
                $f(out, x)
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each!(v, |o: &mut Vec<u8>, x: &i8| o.push(*x as u8)),
        Array::U16(v) => each!(v, |o: &mut Vec<u8>, x: &u16| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => each!(v, |o: &mut Vec<u8>, x: &i16| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => each!(v, |o: &mut Vec<u8>, x: &u32| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::I32(v) => each!(v, |o: &mut Vec<u8>, x: &i32| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::U64(v) => each!(v, |o: &mut Vec<u8>, x: &u64| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::I64(v) => each!(v, |o: &mut Vec<u8>, x: &i64| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => each!(v, |o: &mut Vec<u8>, x: &f32| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => each!(v, |o: &mut Vec<u8>, x: &f64| o
            .extend_from_slice(&x.to_le_bytes())),
        Array::Bool(v) => each!(v, |o: &mut Vec<u8>, x: &bool| o.push(*x as u8)),
        Array::Str(v) => each!(v, |o: &mut Vec<u8>, x: &Vec<u8>| put_str(o, x)),
        Array::Nested(v) => each!(v, put_array),
    }
}
