//! Weight quantization: ggml's block types (read from GGUF), and the layouts tmac's kernels
//! read: bit-plane LUT matrices and 8-bit matrices.

pub mod blocks;
pub mod ggml;
pub mod iq4;
pub mod legacy;
pub mod linear;
pub mod lut;
pub mod q8;
pub mod quantize;
pub mod ternary;
