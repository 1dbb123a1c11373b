//! Model file formats. `Bytes` is where a model's bytes live (a read-only memory map, or memory
//! the embedding application owns); one reader per format parses them without copying.

pub mod gguf;
pub mod gguf_write;
pub mod hf;
pub mod json;
pub mod legacy;
pub mod llama2c;
pub mod reader;
pub mod safetensors;
pub mod tmacfile;

use crate::error::{Error, ErrorKind, Result};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// The bytes of a model file, shared by every handle that uses it.
pub enum Bytes {
    Map(memmap2::Mmap),
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Static(s) => s,
            Bytes::Owned(v) => v,
        }
    }
}

/// Bytes a tensor lives in: its own buffer (repacked at load), or a range of the model file
/// (tmac's own files are used straight from the map).
pub enum Blob {
    Owned(Vec<u8>),
    Mapped {
        bytes: Arc<Bytes>,
        start: usize,
        len: usize,
    },
}

impl Blob {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Blob::Owned(v) => v,
            Blob::Mapped { bytes, start, len } => &bytes.as_slice()[*start..*start + *len],
        }
    }
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_mapped(&self) -> bool {
        matches!(self, Blob::Mapped { .. })
    }
}

/// Refuse, before opening it, a path that is not a regular file or a block device: opening a
/// FIFO for reading would wait forever for a writer, and a character device never ends.
pub fn check_readable(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("{}: cannot open: {e}", path.display()),
        )
    })?;
    let ft = meta.file_type();
    #[cfg(unix)]
    let device = std::os::unix::fs::FileTypeExt::is_block_device(&ft);
    #[cfg(not(unix))]
    let device = false;
    if !(ft.is_file() || ft.is_dir() || device) {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{}: not a regular file (a pipe or a device cannot be mapped)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Map `path` read-only. The map is shared: several models may hold it.
pub fn map_file(path: &Path) -> Result<Arc<Bytes>> {
    check_readable(path)?;
    let file = File::open(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("{}: cannot open: {e}", path.display()),
        )
    })?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{}: is a directory (a Hugging Face model? convert it to a tmac file with \
                 `tmac quantize DIR OUT.tmac --type tq`)",
                path.display()
            ),
        ));
    }
    let len = meta.len();
    if len == 0 {
        return Err(Error::format(format!("{}: file is empty", path.display())));
    }
    // SAFETY: the map is read-only and private to this process. memmap2 marks this unsafe
    // because another process truncating or rewriting the file while it is mapped is undefined
    // behaviour; the README tells users not to modify a model file while it is loaded, as
    // every mmap-based loader (llama.cpp included) must.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("{}: cannot map: {e}", path.display()),
        )
    })?;
    Ok(Arc::new(Bytes::Map(map)))
}

/// The file formats tmac recognises, by their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gguf,
    /// llama2.c "version 0" checkpoint (no magic; see `llama2c::detect`).
    Llama2c,
    /// The original T-MAC engine's v1 file ("TMAC").
    TmacV1,
    /// The original T-MAC engine's v2 file ("TM2\0").
    TmacV2,
    /// The original engine's int4 baseline ("Q4V1").
    Q4V1,
}

impl Kind {
    /// A format of the original Mojo T-MAC engine or llama2.c (read by format::legacy).
    pub fn is_legacy(self) -> bool {
        self != Kind::Gguf
    }
}

pub fn detect(bytes: &[u8]) -> Result<Kind> {
    match bytes.get(..4) {
        Some(m) if m == gguf::MAGIC => Ok(Kind::Gguf),
        Some(m) if m == legacy::MAGIC_V1 => Ok(Kind::TmacV1),
        Some(m) if m == legacy::MAGIC_V2 => Ok(Kind::TmacV2),
        Some(m) if m == legacy::MAGIC_Q4 => Ok(Kind::Q4V1),
        Some(m) => match llama2c::detect(bytes) {
            Ok(_) => Ok(Kind::Llama2c),
            Err(why) => Err(Error::format(format!(
                "unknown model format (first bytes {m:02x?}); {why}"
            ))),
        },
        None => Err(Error::format("file too short to be a model")),
    }
}
