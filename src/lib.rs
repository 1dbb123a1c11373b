//! tmac: low-bit LLM inference for small CPUs with T-MAC lookup-table kernels.
//!
//! The safe Rust API: load a [`Model`] once, open one or more [`Session`]s on it, feed a prompt
//! and pull tokens. The C API in `capi` is a thin layer over exactly this.
//!
//! ```no_run
//! use tmac::{Model, LoadOptions, Session, SessionOptions, Step};
//! let model = Model::load("model.gguf", &LoadOptions::default())?;
//! let mut s = Session::new(model, &SessionOptions::default())?;
//! s.prompt("The capital of France is")?;
//! while let Step::Token { text, .. } = s.next_token()? {
//!     print!("{text}");
//! }
//! # Ok::<(), tmac::Error>(())
//! ```

/// cbindgen:ignore
pub mod bench;
/// The C API (the only module cbindgen reads; the others are marked cbindgen:ignore).
#[allow(non_camel_case_types)]
pub mod capi;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod format;
/// cbindgen:ignore
pub mod kernel;
/// cbindgen:ignore
pub mod math;
/// cbindgen:ignore
pub mod model;
/// cbindgen:ignore
pub mod perplexity;
/// cbindgen:ignore
pub mod quant;
/// cbindgen:ignore
pub mod sampler;
/// cbindgen:ignore
#[doc(hidden)]
pub mod testing;
/// cbindgen:ignore
pub mod tokenizer;

pub use error::{Error, ErrorKind, Result};
pub use model::{Compute, LoadOptions, Model, Session, SessionOptions, Step, StopReason};
pub use sampler::SamplerParams;

/// The crate version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
