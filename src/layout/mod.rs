//! Weight layouts: ggml's block types (one table of type traits, one decoder per type), the
//! matrices tmac's kernels read (bit-plane LUT, 8-bit, 4-bit codebook) and the quantizers that
//! produce them from f32.

pub mod blocks;
pub mod ggml;
pub mod iq4;
pub mod linear;
pub mod lut;
pub mod q8;
pub mod quantize;
pub mod ternary;
