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

#![cfg_attr(feature = "tools", warn(unreachable_pub))]
// Without `tools`, helpers only conversion and measurement call are unused, not dead.
#![cfg_attr(not(feature = "tools"), allow(dead_code))]

// The layers, bottom to top (ARCHITECTURE.md; tools/check_layers.py holds the code to them).
mod bytes;
mod error;
mod format;
mod kernel;
mod layout;
mod math;
mod model;
mod sampler;
mod session;
mod tokenizer;
// The edges: the C API, configuration from the environment, and (feature `tools`) conversion
// and measurement for the `tmac` tool.
/// The C API (cbindgen reads this file alone to write include/tmac.h).
#[allow(non_camel_case_types)]
pub mod capi;
#[cfg(feature = "tools")]
pub mod convert;
pub mod settings;
/// Internals for tmac's own tests, examples and fuzz targets: not an API.
#[doc(hidden)]
pub mod testing;
#[cfg(feature = "tools")]
pub mod tools;

pub use bytes::Bytes;
pub use error::{Error, ErrorKind, Result};
pub use format::Kind as FileKind;
pub use kernel::lut::Tables;
pub use kernel::{Isa, Knobs};
pub use model::config::Config;
pub use model::{Compute, LoadOptions, Model};
pub use sampler::SamplerParams;
pub use session::{AbortCheck, Session, SessionOptions, Step, StopReason};
pub use tokenizer::Vocab;

/// The crate version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The README's Rust examples, compiled by `cargo test` (as doc tests) so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
