//! Weight quantization: ggml's block types (read from GGUF).

pub mod ggml;
