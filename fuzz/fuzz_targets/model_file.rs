//! Any bytes as a model file (GGUF, tmac files and every other format tmac reads).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tmac::testing::fuzz::model_file(data));
