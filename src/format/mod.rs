//! Model file formats: one reader per format parses a file's bytes (`crate::bytes`) without
//! copying.

pub(crate) mod gguf;
pub(crate) mod gguf_write;
#[cfg(feature = "tools")]
pub(crate) mod json;
#[cfg(feature = "tools")]
pub(crate) mod legacy;
#[cfg(feature = "tools")]
pub(crate) mod llama2c;
pub(crate) mod reader;
#[cfg(feature = "tools")]
pub(crate) mod safetensors;
pub(crate) mod tensors;
pub(crate) mod tmacfile;

use crate::error::{Error, Result};

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

/// The magic numbers of the original T-MAC engine's files (legacy-formats.md).
pub(crate) const MAGIC_V1: &[u8; 4] = b"TMAC";
pub(crate) const MAGIC_V2: &[u8; 4] = b"TM2\0";
pub(crate) const MAGIC_Q4: &[u8; 4] = b"Q4V1";

pub(crate) fn detect(bytes: &[u8]) -> Result<Kind> {
    match bytes.get(..4) {
        Some(m) if m == gguf::MAGIC => Ok(Kind::Gguf),
        Some(m) if m == MAGIC_V1 => Ok(Kind::TmacV1),
        Some(m) if m == MAGIC_V2 => Ok(Kind::TmacV2),
        Some(m) if m == MAGIC_Q4 => Ok(Kind::Q4V1),
        Some(m) => match llama2c_detect(bytes) {
            Ok(()) => Ok(Kind::Llama2c),
            Err(why) => Err(Error::format(format!(
                "unknown model format (first bytes {m:02x?}); {why}"
            ))),
        },
        None => Err(Error::format("file too short to be a model")),
    }
}

#[cfg(feature = "tools")]
fn llama2c_detect(bytes: &[u8]) -> std::result::Result<(), String> {
    llama2c::detect(bytes).map(|_| ())
}

#[cfg(not(feature = "tools"))]
fn llama2c_detect(_: &[u8]) -> std::result::Result<(), String> {
    Err(
        "this build reads GGUF and tmac files (llama2.c checkpoints need the cargo feature \
         `tools`)"
            .into(),
    )
}
