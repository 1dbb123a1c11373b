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

pub mod bytes;
/// The C API (cbindgen reads this file alone to write include/tmac.h).
#[allow(non_camel_case_types)]
pub mod capi;
#[cfg(feature = "tools")]
pub mod convert;
pub mod error;
pub mod format;
pub mod kernel;
pub mod layout;
pub mod math;
pub mod model;
pub mod sampler;
pub mod session;
pub mod settings;
#[doc(hidden)]
pub mod testing;
pub mod tokenizer;
#[cfg(feature = "tools")]
pub mod tools;

pub use error::{Error, ErrorKind, Result};
pub use model::{Compute, LoadOptions, Model};
pub use sampler::SamplerParams;
pub use session::{AbortCheck, Session, SessionOptions, Step, StopReason};

/// The crate version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
