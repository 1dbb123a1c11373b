//! Measurement for the `tmac` tool, at the edge of the library (cargo feature `tools`): decode
//! and prefill speed, perplexity, and the timing of kernel knobs.

pub mod bench;
pub mod perplexity;
pub mod tune;
