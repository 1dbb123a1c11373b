//! Where a model's bytes live: a read-only memory map of the file, or memory the embedding
//! application owns. `Blob` is one tensor's bytes: a range of the file used in place, or a
//! buffer of its own (repacked at load). Every layer above reads weights through these.

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
pub(crate) fn check_readable(path: &Path) -> Result<()> {
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
pub(crate) fn map_file(path: &Path) -> Result<Arc<Bytes>> {
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
