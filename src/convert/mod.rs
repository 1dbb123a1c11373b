//! Conversion, at the edge of the library (cargo feature `convert`, on by default; the `tmac`
//! tool needs it, an embedded runtime does not): `tmac quantize` of GGUF, tmac and Hugging Face
//! models into tmac files, and the original T-MAC engine's and llama2.c's formats both ways.

pub mod calibrate;
pub mod export;
pub mod hf;
pub mod legacy;
pub mod quantize;
pub(crate) mod rotate;
