//! Arbitrary text and token ids through the tokenizer and the UTF-8 stream.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tmac::testing::fuzz::tokenizer(data));
