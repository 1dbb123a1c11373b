//! Any bytes as a llama2.c tokenizer.bin, then used as a vocabulary.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tmac::testing::fuzz::tokenizer_bin(data));
