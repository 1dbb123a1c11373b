//! A sequence of C API calls on a tiny model, driven by the input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tmac::testing::fuzz::capi(data));
