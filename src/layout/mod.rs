//! Weight layouts: ggml's block types (one table of type traits, one decoder per type), the
//! matrices tmac's kernels read (bit-plane LUT, 8-bit, 4-bit codebook) and the quantizers that
//! produce them from f32.

pub(crate) mod blocks;
pub(crate) mod ggml;
pub(crate) mod gptq;
pub(crate) mod iq4;
pub(crate) mod linear;
pub(crate) mod lut;
pub(crate) mod q8;
pub(crate) mod quantize;
pub(crate) mod ternary;
