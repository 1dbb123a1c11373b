//! A loaded model: weights, config and vocabulary, shared by the sessions (`crate::session`)
//! that run it.

pub(crate) mod config;
pub(crate) mod forward;
#[cfg(feature = "tools")]
pub(crate) mod legacy;
pub(crate) mod weights;

use crate::bytes::Bytes;
use crate::error::{Error, ErrorKind, Result};
use crate::format::gguf::Gguf;
use crate::format::tensors::Loader;
use crate::format::{self, Kind};
use crate::kernel::lut::Tables;
use crate::kernel::{self, Isa, Knobs};
use crate::layout::linear::Linear;
use crate::tokenizer::Vocab;
use config::Config;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use weights::Weights;

/// How the weights are held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compute {
    /// T-MAC LUT kernels for low-bit weights, 8-bit kernels for 8-bit weights.
    #[default]
    Kernels,
    /// Every weight dequantized to f32: the correctness reference.
    F32,
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub compute: Compute,
    /// Kernel instruction set; None = the best this CPU has (`kernel::isa()`).
    pub kernel: Option<Isa>,
    /// Kernel knobs; None = the instruction set's defaults (`settings::from_env` reads a tuning
    /// profile where the caller wants one).
    pub knobs: Option<Knobs>,
    /// Lookup tables (exact or int8), overriding the knobs' choice; None = the knobs'.
    pub tables: Option<Tables>,
    /// llama2.c-style files (llama2.c checkpoints, the original T-MAC engine's files) keep the
    /// vocabulary in a separate tokenizer.bin: this one, or by default `tokenizer.bin` next to
    /// the model, else in the current directory. GGUF files ignore it.
    pub tokenizer: Option<std::path::PathBuf>,
}

pub struct Model {
    /// Instruction set and tuning knobs of the kernels this model runs on.
    pub(crate) isa: Isa,
    pub(crate) knobs: Knobs,
    pub(crate) cfg: Config,
    pub(crate) vocab: Vocab,
    pub(crate) weights: Weights,
    bytes: Arc<Bytes>,
    pub(crate) format: Kind,
    /// Tensor types in the file and how many tensors of each.
    pub(crate) tensor_types: Vec<(String, usize)>,
}

impl Model {
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Arc<Model>> {
        let path = path.as_ref();
        let bytes = crate::bytes::map_file(path)?;
        Model::from_bytes_at(bytes, opts, Some(path)).map_err(|e| e.context(path.display()))
    }

    /// Like `load`, but a file already loaded with the same options (and not modified since)
    /// is shared instead of loaded again: one memory map, one copy of the weights.
    pub fn load_shared(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Arc<Model>> {
        type Key = (
            std::path::PathBuf,
            u64,
            Option<std::time::SystemTime>,
            Compute,
            Option<Isa>,
            Option<Knobs>,
            Option<Tables>,
            Option<std::path::PathBuf>,
        );
        // one slot per file and options, locked while that file loads: other files load at the
        // same time, and two handles on one file wait for one load
        type Slot = Arc<Mutex<Weak<Model>>>;
        static CACHE: Mutex<Vec<(Key, Slot)>> = Mutex::new(Vec::new());
        let path = path.as_ref();
        crate::bytes::check_readable(path)?;
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("{}: cannot open: {e}", path.display()),
            )
        })?;
        let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let key: Key = (
            canon,
            meta.len(),
            meta.modified().ok(),
            opts.compute,
            opts.kernel,
            opts.knobs,
            opts.tables,
            opts.tokenizer.clone(),
        );
        let slot = {
            let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
            // keep slots in use: being loaded (locked) or holding a live model
            cache.retain(|(_, s)| {
                s.try_lock()
                    .map_or(true, |w| w.strong_count() > 0 || Arc::strong_count(s) > 1)
            });
            match cache.iter().find(|(k, _)| *k == key) {
                Some((_, s)) => s.clone(),
                None => {
                    let s: Slot = Arc::new(Mutex::new(Weak::new()));
                    cache.push((key, s.clone()));
                    s
                }
            }
        };
        let mut w = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = w.upgrade() {
            return Ok(m);
        }
        let m = Model::load(path, opts)?;
        *w = Arc::downgrade(&m);
        Ok(m)
    }

    /// Only the vocabulary of the model at `path`: enough to tokenize, also for a GGUF whose
    /// architecture or tensor types tmac cannot run.
    pub fn load_vocab(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Vocab> {
        let path = path.as_ref();
        let bytes = crate::bytes::map_file(path)?;
        if format::detect(bytes.as_slice())?.is_legacy() {
            // the vocabulary is in tokenizer.bin, sized by the model's header
            return Ok(Model::load(path, opts)?.vocab.clone());
        }
        let g = Gguf::parse(bytes.as_slice()).map_err(|e| e.context(path.display()))?;
        Vocab::from_gguf(&g).map_err(|e| e.context(path.display()))
    }

    pub fn from_bytes(bytes: Arc<Bytes>, opts: &LoadOptions) -> Result<Arc<Model>> {
        Model::from_bytes_at(bytes, opts, None)
    }

    /// `from_bytes` for a file at `path` (legacy files look for tokenizer.bin next to it).
    pub(crate) fn from_bytes_at(
        bytes: Arc<Bytes>,
        opts: &LoadOptions,
        path: Option<&Path>,
    ) -> Result<Arc<Model>> {
        let file = bytes.as_slice();
        let kind = format::detect(file)?;
        if kind.is_legacy() {
            #[cfg(feature = "tools")]
            return legacy::load(bytes, kind, opts, path);
            #[cfg(not(feature = "tools"))]
            {
                let _ = path; // only legacy files look for a tokenizer.bin next to them
                return Err(Error::unsupported(format!(
                    "a {kind:?} file: this build reads GGUF and tmac files (the original T-MAC \
                     engine's and llama2.c's formats need the cargo feature `tools`)"
                )));
            }
        }
        let g = Gguf::parse(file)?;
        weights::check_types(&g)?;
        let mut cfg = Config::from_gguf(&g)?;
        let vocab = Vocab::from_gguf(&g)?;
        cfg.n_vocab = vocab.len();
        if let Some(v) = g.get_u64(&format!("{}.vocab_size", cfg.arch_name))? {
            if v != cfg.n_vocab as u64 {
                return Err(Error::format(format!(
                    "{}.vocab_size is {v} but the tokenizer has {} tokens",
                    cfg.arch_name, cfg.n_vocab
                )));
            }
        }
        let mut loader = Loader::new(&g, file, &bytes);
        weights::split_fused(&mut loader, &cfg)?;
        let weights = match opts.compute {
            Compute::F32 => weights::load(&loader, &cfg, &weights::F32Builder)?,
            Compute::Kernels => weights::load(&loader, &cfg, &weights::KernelBuilder)?,
        };
        let mut tensor_types: Vec<(String, usize)> = Vec::new();
        for t in &g.tensors {
            match tensor_types.iter_mut().find(|(n, _)| n == t.typ.name()) {
                Some(e) => e.1 += 1,
                None => tensor_types.push((t.typ.name().to_string(), 1)),
            }
        }
        let (isa, knobs) = kernels_for(opts)?;
        Ok(Arc::new(Model {
            isa,
            knobs,
            cfg,
            vocab,
            weights,
            format: kind,
            tensor_types,
            bytes,
        }))
    }

    pub fn file(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// How `tmac quantize` made this file (a tmac file's `tmac.quantization`), if it says.
    pub fn quantization(&self) -> Option<String> {
        let g = Gguf::parse(self.file()).ok()?;
        g.get_str("tmac.quantization")
            .ok()
            .flatten()
            .map(str::to_string)
    }

    pub fn file_size(&self) -> usize {
        self.bytes.as_slice().len()
    }

    /// The model's shape and hyperparameters.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The instruction set and knobs of the kernels it runs on.
    pub fn kernels(&self) -> (Isa, Knobs) {
        (self.isa, self.knobs)
    }

    /// The file's format (GGUF, llama2.c, the original T-MAC engine's).
    pub fn file_kind(&self) -> Kind {
        self.format
    }

    /// Tensor types in the file and how many tensors of each.
    pub fn tensor_types(&self) -> &[(String, usize)] {
        &self.tensor_types
    }

    /// The weight formats of the transformer blocks' and the output head's matrices, e.g.
    /// ("lut-q4", "q8").
    pub fn matrix_kinds(&self) -> (String, String) {
        let w = &self.weights;
        let block = w.layers.first().map_or("none".into(), |l| l.wq.kind());
        (block, w.output.kind())
    }

    fn matrices(&self) -> impl Iterator<Item = &Linear> {
        let w = &self.weights;
        w.layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
            .chain(std::iter::once(&w.output))
    }

    /// Weight bytes read per generated token (every matrix once).
    pub fn weight_bytes(&self) -> usize {
        self.matrices().map(|m| m.weight_bytes()).sum()
    }

    /// Average bits per weight over the matrices, as held in memory.
    pub fn bits_per_weight(&self) -> f64 {
        let n: usize = self.matrices().map(|m| m.rows() * m.cols()).sum();
        self.weight_bytes() as f64 * 8.0 / n.max(1) as f64
    }

    /// What runs the matrices, e.g. "lut-q4, avx2, exact tables" (tables only where the
    /// lookup-table kernels run: an f32 or 8-bit model has none).
    pub fn kernel_desc(&self) -> String {
        let is_lut = |l: &Linear| matches!(l, Linear::Lut(_));
        let w = &self.weights.layers[0].wq;
        match w {
            Linear::F32 { .. } => w.kind(),
            _ if self.matrices().any(is_lut) => format!(
                "{}, {}, {} tables",
                w.kind(),
                self.isa.name(),
                self.knobs.tables.name()
            ),
            _ => format!("{}, {}", w.kind(), self.isa.name()),
        }
    }

    /// Default context: the model's own, capped so a KV cache fits small devices.
    pub fn default_context(&self) -> usize {
        self.cfg.n_ctx_train.min(DEFAULT_CTX_CAP)
    }
}

/// The kernels a model loaded with `opts` runs on, and their knobs.
fn kernels_for(opts: &LoadOptions) -> Result<(Isa, Knobs)> {
    let isa = opts.kernel.unwrap_or_else(kernel::isa);
    let mut knobs = opts.knobs.unwrap_or(Knobs::default_for(isa));
    if let Some(t) = opts.tables {
        knobs.tables = t;
    }
    Ok((isa, knobs))
}

pub(crate) const DEFAULT_CTX_CAP: usize = 2048;
