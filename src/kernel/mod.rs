//! Compute kernels. `f32` is the portable reference for full-precision weights.

pub mod f32;
