//! The C API: a thin layer over the safe Rust API, generating `include/tmac.h` through cbindgen.
//!
//! Rules (rustls-ffi's): every exported function checks its pointers, catches panics, and reports
//! failure as a `tmac_status`; out-parameters are written only on success; the handle keeps the
//! message of its last error. A panic poisons the handle: every later call on it returns
//! `TMAC_ERR_PANIC`, and only `tmac_free` is useful.
//!
//! The exported functions take raw pointers from C. Their validity is the C caller's contract,
//! written in the header; every dereference sits in an `unsafe` block with its SAFETY note, so
//! the functions themselves are not marked `unsafe` (that would only matter to Rust callers).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::bytes::Bytes;
use crate::error::{Error, ErrorKind};
use crate::kernel::lut::Tables;
use crate::model::{Compute, LoadOptions, Model};
use crate::sampler::SamplerParams;
use crate::session::{Session, SessionOptions, Step};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Bumped on any change that breaks binary compatibility; also the SONAME (`libtmac.so.1`).
pub const TMAC_ABI_VERSION: u32 = 1;

/// `tmac_params.flags`: compute in f32 with every weight dequantized (the reference path).
pub const TMAC_FLAG_F32: u32 = 1;

/// `tmac_params.flags`: when generation fills the context, drop its older half and go on
/// (instead of returning `TMAC_DONE`).
pub const TMAC_FLAG_SLIDING_WINDOW: u32 = 2;

/// `tmac_params.flags`: int8 lookup tables (faster, lossy; see the README). Without this flag
/// or `TMAC_FLAG_EXACT_TABLES` the process default applies: exact, unless `TMAC_TABLES` or a
/// tuning profile says int8. Read at load; `tmac_new_session` shares the model as loaded.
pub const TMAC_FLAG_INT8_TABLES: u32 = 4;

/// `tmac_params.flags`: exact (int16) lookup tables whatever a tuning profile says.
pub const TMAC_FLAG_EXACT_TABLES: u32 = 8;

/// `tmac_params.flags`: `tmac_prompt` turns control-token text (`<|im_end|>`) into control
/// tokens. Without it a prompt is plain text, so user input cannot forge a chat turn; chat
/// content (`tmac_prompt_chat`) is always plain text.
pub const TMAC_FLAG_PARSE_SPECIAL: u32 = 16;

/// `tmac_params.flags`: read the kernel settings from the environment at load, as the `tmac`
/// tool does: `TMAC_KERNEL` (scalar, avx2, avx512 or neon), the tuning profile saved by `tmac tune`
/// (`TMAC_PROFILE`, else `$XDG_CONFIG_HOME/tmac/profile` or `$HOME/.config/tmac/profile`) and
/// `TMAC_TABLES` (exact or int8). Without it the library reads no environment variable and
/// no file but the model: the best kernels for the CPU with their default settings. What
/// cannot be applied is reported to the log callback (`tmac_set_log`).
pub const TMAC_FLAG_READ_ENV: u32 = 32;

/// `tmac_params.flags`: keep the KV cache in f16, as llama.cpp does by default: half its memory,
/// faster attention on long contexts, slightly different logits (the same on every CPU).
/// Default: f32.
pub const TMAC_FLAG_KV_F16: u32 = 64;

const KNOWN_FLAGS: u32 = TMAC_FLAG_F32
    | TMAC_FLAG_SLIDING_WINDOW
    | TMAC_FLAG_INT8_TABLES
    | TMAC_FLAG_EXACT_TABLES
    | TMAC_FLAG_PARSE_SPECIAL
    | TMAC_FLAG_READ_ENV
    | TMAC_FLAG_KV_F16;

/// Status codes. Fixed width (`int32_t`) and append-only: values are never reused.
/// Negative values are errors; `TMAC_OK` and `TMAC_DONE` are not.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tmac_status {
    /// Success.
    TMAC_OK = 0,
    /// Generation has ended; `tmac_stop_reason` says why.
    TMAC_DONE = 1,
    /// A required pointer argument was NULL.
    TMAC_ERR_NULL_ARG = -1,
    /// An argument is invalid (bad UTF-8, out-of-range value, wrong struct_size).
    TMAC_ERR_INVALID_ARG = -2,
    /// The model file could not be opened or read.
    TMAC_ERR_IO = -3,
    /// The model file is malformed (truncated, inconsistent or hostile).
    TMAC_ERR_BAD_MODEL = -4,
    /// The model uses something tmac does not support (architecture, tensor type).
    TMAC_ERR_UNSUPPORTED = -5,
    /// The text does not fit in the context window; nothing was consumed.
    TMAC_ERR_CONTEXT_FULL = -6,
    /// The output buffer cannot hold the next character; `*out_len` says how big it must be.
    TMAC_ERR_BUFFER_TOO_SMALL = -7,
    /// A limit the caller set (such as a memory budget) would be exceeded.
    TMAC_ERR_LIMIT = -8,
    /// The call is not valid in the current state (e.g. generating before any prompt, or
    /// after a system message with no user message).
    TMAC_ERR_STATE = -9,
    /// The abort callback (`tmac_set_abort`) stopped the call; the handle is as it was before.
    TMAC_ERR_ABORTED = -10,
    /// An internal error (a bug in tmac). The handle is dead: free it.
    TMAC_ERR_PANIC = -100,
}
use tmac_status::*;

/// Why the last generation ended (`tmac_stop_reason`).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tmac_stop {
    /// A generation is going on, or none has run since the last prompt.
    TMAC_STOP_NONE = 0,
    /// The model produced an end-of-generation token.
    TMAC_STOP_END_OF_TEXT = 1,
    /// `max_tokens` tokens were generated (`tmac_prompt(t, "", 0)` continues).
    TMAC_STOP_MAX_TOKENS = 2,
    /// The context window is full.
    TMAC_STOP_CONTEXT_FULL = 3,
    /// The text reached a stop sequence (`tmac_set_stop`), which is not part of it.
    TMAC_STOP_SEQUENCE = 4,
    /// The abort callback stopped the last prompt.
    TMAC_STOP_ABORTED = 5,
}

/// Log callback (`tmac_set_log`): `level` is `TMAC_LOG_WARN`, `msg` a NUL-terminated message
/// valid during the call, `user_data` what was registered with it.
pub type tmac_log_fn =
    Option<extern "C" fn(level: i32, msg: *const c_char, user_data: *mut c_void)>;

/// Abort callback (`tmac_set_abort`): asked between batches of tokens while a prompt runs;
/// return nonzero to stop it.
pub type tmac_abort_fn = Option<extern "C" fn(user_data: *mut c_void) -> i32>;

/// `tmac_log_fn` level: something the app asked for could not be applied.
pub const TMAC_LOG_WARN: i32 = 1;

/// Opaque handle: a loaded model (possibly shared with other handles) and one conversation.
pub struct tmac {
    session: Session,
    /// Text generated but not yet handed to the caller.
    outbox: Vec<u8>,
    parse_special: bool,
    last_error: CString,
    poisoned: bool,
    info_strings: [CString; 2],
}

/// Load and generation settings. Always start from `tmac_params_default()`, which sets
/// `struct_size`; fields may be added at the end in later versions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tmac_params {
    /// `sizeof(tmac_params)` as the caller compiled it.
    pub struct_size: u32,
    /// Context length in tokens; 0 = the model's, at most 2048.
    pub n_ctx: u32,
    /// 0 = greedy. Default 0.
    pub temperature: f32,
    /// 1 = off. Default 0.95.
    pub top_p: f32,
    /// 0 = off. Default 40.
    pub top_k: u32,
    /// 0 = off. Default 0.05.
    pub min_p: f32,
    /// 1 = off. Default 1.
    pub repeat_penalty: f32,
    /// Must be 0 (it keeps `seed` 8-byte aligned; a later version may use it).
    pub reserved0: u32,
    /// Seed of the sampler's random generator. Default 0x5EED.
    pub seed: u64,
    /// Tokens per generation (per prompt); 0 = until end of text or context. Default 0.
    pub max_tokens: u32,
    /// `TMAC_FLAG_*` bits. Default 0.
    pub flags: u32,
    /// MiB the handle may allocate for its KV cache and buffers (the model's weights are
    /// mapped, not counted); a load that would need more fails with `TMAC_ERR_LIMIT`.
    /// 0 = no limit. Default 0.
    pub memory_budget_mib: u32,
    /// Must be 0 (the struct's tail, explicit; a later version may use it).
    pub reserved1: u32,
}

const PARAMS_V1_SIZE: usize = std::mem::size_of::<tmac_params>();

/// The `struct_size` values an older caller (or this version's) can have: each ends a field.
const PARAMS_FIELD_ENDS: [usize; 12] = {
    use std::mem::offset_of;
    type P = tmac_params;
    [
        offset_of!(P, n_ctx) + 4,
        offset_of!(P, temperature) + 4,
        offset_of!(P, top_p) + 4,
        offset_of!(P, top_k) + 4,
        offset_of!(P, min_p) + 4,
        offset_of!(P, repeat_penalty) + 4,
        offset_of!(P, reserved0) + 4,
        offset_of!(P, seed) + 8,
        offset_of!(P, max_tokens) + 4,
        offset_of!(P, flags) + 4,
        offset_of!(P, memory_budget_mib) + 4,
        offset_of!(P, reserved1) + 4,
    ]
};

/// What a handle's model is. Strings are owned by the handle (valid until `tmac_free`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tmac_info {
    /// Set to `sizeof(tmac_info)` before calling `tmac_model_info`.
    pub struct_size: u32,
    pub n_vocab: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_ff: u32,
    /// Context of this handle, and the one the model was trained with.
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    /// Average bits per weight of the matrices as tmac holds them.
    pub bits_per_weight: f32,
    pub file_size: u64,
    /// e.g. "llama"
    pub architecture: *const c_char,
    /// The kernels in use, e.g. "lut-q4, avx2, exact tables" or "f32"
    pub kernel: *const c_char,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_thread_error(msg: &str) {
    LAST_ERROR.with(|e| *e.borrow_mut() = cstring(msg));
}

fn cstring(msg: &str) -> CString {
    CString::new(msg.replace('\0', " ")).unwrap_or_default()
}

fn status_of(e: &Error) -> tmac_status {
    match e.kind {
        ErrorKind::Io => TMAC_ERR_IO,
        ErrorKind::Format => TMAC_ERR_BAD_MODEL,
        ErrorKind::Unsupported => TMAC_ERR_UNSUPPORTED,
        ErrorKind::InvalidArg => TMAC_ERR_INVALID_ARG,
        ErrorKind::ContextFull => TMAC_ERR_CONTEXT_FULL,
        ErrorKind::Limit => TMAC_ERR_LIMIT,
        ErrorKind::State => TMAC_ERR_STATE,
        ErrorKind::Aborted => TMAC_ERR_ABORTED,
    }
}

/// The log callback and its user data (`tmac_set_log`); none by default: the library is silent.
struct Logger {
    f: tmac_log_fn,
    user_data: usize,
}

static LOGGER: std::sync::Mutex<Logger> = std::sync::Mutex::new(Logger {
    f: None,
    user_data: 0,
});

/// Hand a message to the app's log callback, if it set one.
fn log(level: i32, msg: &str) {
    let l = LOGGER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = l.f {
        let m = cstring(msg);
        f(level, m.as_ptr(), l.user_data as *mut c_void);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned());
    format!("internal error (panic): {}", s.unwrap_or_default())
}

/// Run `f` on a live handle: NULL and poisoned handles are refused, errors are recorded on the
/// handle, and a panic poisons it.
fn with_handle(
    t: *mut tmac,
    f: impl FnOnce(&mut tmac) -> Result<tmac_status, (tmac_status, String)>,
) -> tmac_status {
    // SAFETY: the caller passes NULL or a pointer from tmac_load that it has not freed, and uses
    // a handle from one thread at a time (both documented in the header).
    let Some(h) = (unsafe { t.as_mut() }) else {
        set_thread_error("the tmac handle is NULL");
        return TMAC_ERR_NULL_ARG;
    };
    if h.poisoned {
        return TMAC_ERR_PANIC;
    }
    match catch_unwind(AssertUnwindSafe(|| f(h))) {
        Ok(Ok(s)) => s,
        Ok(Err((s, msg))) => {
            h.last_error = cstring(&msg);
            s
        }
        Err(p) => {
            h.poisoned = true;
            h.last_error = cstring(&panic_message(&*p));
            TMAC_ERR_PANIC
        }
    }
}

/// Run a function that has no handle (loading, statics), catching panics.
fn guarded(f: impl FnOnce() -> tmac_status) -> tmac_status {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        set_thread_error(&panic_message(&*p));
        TMAC_ERR_PANIC
    })
}

fn err(e: Error) -> (tmac_status, String) {
    (status_of(&e), e.msg)
}

/// Read a caller's params struct, honouring its `struct_size` (a size that ends inside a field
/// is refused), and check it.
fn read_params(p: *const tmac_params) -> Result<tmac_params, String> {
    let mut out = default_params();
    if p.is_null() {
        return Ok(out);
    }
    // SAFETY: p is non-null and points to at least struct_size bytes (the caller's contract);
    // struct_size is read first, then only the prefix both sides know is copied.
    let size = unsafe { std::ptr::addr_of!((*p).struct_size).read_unaligned() } as usize;
    if size < PARAMS_V1_SIZE && !PARAMS_FIELD_ENDS.contains(&size) {
        return Err(format!(
            "tmac_params.struct_size is {size}, which ends inside a field: start from \
             tmac_params_default()"
        ));
    }
    let n = size.min(PARAMS_V1_SIZE);
    // SAFETY: copies n <= size readable bytes into a properly sized, initialized struct.
    unsafe {
        std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut tmac_params as *mut u8, n)
    };
    out.struct_size = PARAMS_V1_SIZE as u32;
    if out.reserved0 != 0 || out.reserved1 != 0 {
        return Err("tmac_params.reserved0 and reserved1 must be 0".into());
    }
    if out.flags & !KNOWN_FLAGS != 0 {
        return Err(format!(
            "tmac_params.flags has unknown bits {:#x}",
            out.flags & !KNOWN_FLAGS
        ));
    }
    if out.n_ctx as usize > MAX_CTX {
        return Err(format!(
            "tmac_params.n_ctx is {}, more than {MAX_CTX}",
            out.n_ctx
        ));
    }
    Ok(out)
}

/// The largest context a handle takes (the header's promise).
const MAX_CTX: usize = 1 << 20;

fn default_params() -> tmac_params {
    let s = SamplerParams::default();
    tmac_params {
        struct_size: PARAMS_V1_SIZE as u32,
        n_ctx: 0,
        temperature: 0.0,
        top_p: s.top_p,
        top_k: s.top_k as u32,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        seed: s.seed,
        max_tokens: 0,
        flags: 0,
        memory_budget_mib: 0,
        reserved0: 0,
        reserved1: 0,
    }
}

fn sampler_params(p: &tmac_params) -> SamplerParams {
    SamplerParams {
        temperature: p.temperature,
        top_k: p.top_k as usize,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        seed: p.seed,
        ..SamplerParams::default()
    }
}

fn new_handle(model: Arc<Model>, p: &tmac_params) -> Result<Box<tmac>, Error> {
    let opts = SessionOptions {
        memory_budget: p.memory_budget_mib as usize * 1048576,
        sliding_window: p.flags & TMAC_FLAG_SLIDING_WINDOW != 0,
        n_ctx: p.n_ctx as usize,
        sampler: sampler_params(p),
        max_tokens: p.max_tokens as usize,
        kv_f16: p.flags & TMAC_FLAG_KV_F16 != 0,
    };
    let session = Session::new(model, &opts)?;
    let kernel = session.model.kernel_desc();
    let arch = session.model.cfg.arch_name.clone();
    Ok(Box::new(tmac {
        session,
        outbox: Vec::new(),
        parse_special: p.flags & TMAC_FLAG_PARSE_SPECIAL != 0,
        last_error: CString::default(),
        poisoned: false,
        info_strings: [cstring(&arch), cstring(&kernel)],
    }))
}

fn load_with(
    params: *const tmac_params,
    out: *mut *mut tmac,
    load: impl FnOnce(&LoadOptions) -> crate::Result<Arc<Model>>,
) -> tmac_status {
    if out.is_null() {
        set_thread_error("tmac_load: out is NULL");
        return TMAC_ERR_NULL_ARG;
    }
    let p = match read_params(params) {
        Ok(p) => p,
        Err(m) => {
            set_thread_error(&m);
            return TMAC_ERR_INVALID_ARG;
        }
    };
    let compute = if p.flags & TMAC_FLAG_F32 != 0 {
        Compute::F32
    } else {
        Compute::default()
    };
    let tables = match (
        p.flags & TMAC_FLAG_INT8_TABLES != 0,
        p.flags & TMAC_FLAG_EXACT_TABLES != 0,
    ) {
        (false, false) => None,
        (true, false) => Some(Tables::Int8),
        (false, true) => Some(Tables::Exact),
        (true, true) => {
            set_thread_error("tmac_params.flags: INT8_TABLES and EXACT_TABLES are exclusive");
            return TMAC_ERR_INVALID_ARG;
        }
    };
    let (kernel, knobs) = if p.flags & TMAC_FLAG_READ_ENV != 0 {
        let env = crate::settings::from_env(&mut |m| log(TMAC_LOG_WARN, &m));
        (Some(env.isa), Some(env.knobs))
    } else {
        (None, None)
    };
    match load(&LoadOptions {
        compute,
        kernel,
        knobs,
        tables,
        ..Default::default()
    })
    .and_then(|m| new_handle(m, &p))
    {
        Ok(h) => {
            // SAFETY: out is non-null (checked above) and points to writable storage.
            unsafe { *out = Box::into_raw(h) };
            TMAC_OK
        }
        Err(e) => {
            set_thread_error(&e.msg);
            status_of(&e)
        }
    }
}

/// Default parameters, with `struct_size` set.
#[no_mangle]
pub extern "C" fn tmac_params_default() -> tmac_params {
    default_params()
}

/// Load a model file (GGUF) and open a conversation on it. On success `*out` is a new handle;
/// on failure `*out` is untouched and `tmac_last_error(NULL)` says why. `params` may be NULL
/// (defaults). `path` is bytes, as the OS takes it (it need not be UTF-8); a pipe or a
/// character device is refused. Handles that load the same file share one read-only memory
/// map; loads of different files run in parallel.
#[no_mangle]
pub extern "C" fn tmac_load(
    path: *const c_char,
    params: *const tmac_params,
    out: *mut *mut tmac,
) -> tmac_status {
    guarded(|| {
        if path.is_null() {
            set_thread_error("tmac_load: path is NULL");
            return TMAC_ERR_NULL_ARG;
        }
        // SAFETY: path is non-null and NUL-terminated (the caller's contract).
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        #[cfg(unix)]
        let path = std::path::Path::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes),
        );
        #[cfg(not(unix))]
        let path = match std::str::from_utf8(bytes) {
            Ok(p) => std::path::Path::new(p),
            Err(_) => {
                set_thread_error("tmac_load: path is not valid UTF-8");
                return TMAC_ERR_INVALID_ARG;
            }
        };
        load_with(params, out, |o| Model::load_shared(path, o))
    })
}

/// Load a model from memory (e.g. embedded in the application or in flash). No copy is made:
/// the `len` bytes at `data` must stay valid and unchanged until every handle using them is
/// freed.
#[no_mangle]
pub extern "C" fn tmac_load_from_memory(
    data: *const c_void,
    len: usize,
    params: *const tmac_params,
    out: *mut *mut tmac,
) -> tmac_status {
    guarded(|| {
        if data.is_null() {
            set_thread_error("tmac_load_from_memory: data is NULL");
            return TMAC_ERR_NULL_ARG;
        }
        // SAFETY: data is non-null and points to len readable bytes that outlive every handle
        // made from them (the documented contract of this function).
        let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(data as *const u8, len) };
        load_with(params, out, |o| {
            Model::from_bytes(Arc::new(Bytes::Static(bytes)), o)
        })
    })
}

/// Open another conversation on the model `t` holds (no reload, shared memory).
#[no_mangle]
pub extern "C" fn tmac_new_session(
    t: *mut tmac,
    params: *const tmac_params,
    out: *mut *mut tmac,
) -> tmac_status {
    with_handle(t, |h| {
        if out.is_null() {
            return Err((TMAC_ERR_NULL_ARG, "tmac_new_session: out is NULL".into()));
        }
        let p = read_params(params).map_err(|m| (TMAC_ERR_INVALID_ARG, m))?;
        let n = new_handle(h.session.model.clone(), &p).map_err(err)?;
        // SAFETY: out is non-null (checked above) and points to writable storage.
        unsafe { *out = Box::into_raw(n) };
        Ok(TMAC_OK)
    })
}

/// Borrow `len` bytes at `ptr` as UTF-8 text.
fn text_arg<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, (tmac_status, String)> {
    if ptr.is_null() {
        return if len == 0 {
            Ok("")
        } else {
            Err((TMAC_ERR_NULL_ARG, format!("{what} is NULL")))
        };
    }
    // SAFETY: ptr is non-null and points to len readable bytes (the caller's contract).
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    std::str::from_utf8(bytes).map_err(|e| {
        (
            TMAC_ERR_INVALID_ARG,
            format!("{what} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// Feed `len` bytes of UTF-8 text (not NUL-terminated; NUL is fine when len is 0) and run it
/// through the model; the next `tmac_next_token` continues it. The text is plain: control-token
/// text in it stays text unless the handle was made with `TMAC_FLAG_PARSE_SPECIAL`. An empty
/// text continues the last generation (after `max_tokens`, say). A text that does not fit in
/// the context returns `TMAC_ERR_CONTEXT_FULL` and consumes nothing; an aborted one
/// (`tmac_set_abort`) returns `TMAC_ERR_ABORTED` and consumes nothing.
#[no_mangle]
pub extern "C" fn tmac_prompt(t: *mut tmac, utf8: *const c_char, len: usize) -> tmac_status {
    with_handle(t, |h| {
        let text = text_arg(utf8, len, "prompt")?;
        h.session.prompt_with(text, h.parse_special).map_err(err)?;
        Ok(TMAC_OK)
    })
}

/// Feed one chat message with the model's chat template (ChatML, Llama 3, Gemma, ...) and,
/// for a user or assistant message, open the assistant's reply. `role` is a NUL-terminated
/// "system", "user" or "assistant" (others are refused). The message is plain text: control
/// tokens are parsed only in the template's own markup. After a system message there is no
/// reply to generate (`tmac_next_token` returns `TMAC_ERR_STATE`) until a user message.
#[no_mangle]
pub extern "C" fn tmac_prompt_chat(
    t: *mut tmac,
    role: *const c_char,
    utf8: *const c_char,
    len: usize,
) -> tmac_status {
    with_handle(t, |h| {
        if role.is_null() {
            return Err((TMAC_ERR_NULL_ARG, "role is NULL".into()));
        }
        // SAFETY: role is non-null and NUL-terminated (the caller's contract).
        let role = unsafe { CStr::from_ptr(role) }
            .to_str()
            .map_err(|_| (TMAC_ERR_INVALID_ARG, "role is not valid UTF-8".to_string()))?;
        let text = text_arg(utf8, len, "message")?;
        h.session.prompt_chat(role, text).map_err(err)?;
        Ok(TMAC_OK)
    })
}

/// Generate. Writes the next piece of text to `buf` as a NUL-terminated string of whole UTF-8
/// characters and sets `*out_len` to its length (without the NUL). A piece may be empty while
/// a character spans several tokens or text may be a stop sequence. Returns `TMAC_DONE` (with
/// `*out_len` = 0) once generation has ended (`tmac_stop_reason` says why; a character cut by
/// `max_tokens` is kept for a continuation, never printed broken); `TMAC_ERR_BUFFER_TOO_SMALL`
/// if `cap` cannot hold the next character plus NUL, with `*out_len` set to the `cap` needed and
/// nothing consumed; `TMAC_ERR_STATE` with nothing to generate (no prompt yet, after
/// `tmac_reset`, after a system message). Any `cap` >= 5 always works.
#[no_mangle]
pub extern "C" fn tmac_next_token(
    t: *mut tmac,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> tmac_status {
    with_handle(t, |h| {
        if buf.is_null() || out_len.is_null() {
            return Err((
                TMAC_ERR_NULL_ARG,
                "tmac_next_token: buf or out_len is NULL".into(),
            ));
        }
        let mut done = false;
        if h.outbox.is_empty() {
            match h.session.next_token().map_err(err)? {
                Step::Token { text, .. } => h.outbox.extend_from_slice(text.as_bytes()),
                Step::Done { text, .. } => {
                    h.outbox.extend_from_slice(text.as_bytes());
                    done = h.outbox.is_empty();
                }
            }
        }
        if done {
            // SAFETY: out_len and buf are non-null; cap == 0 writes nothing into buf.
            unsafe {
                *out_len = 0;
                if cap > 0 {
                    *buf = 0;
                }
            }
            return Ok(TMAC_DONE);
        }
        // the longest prefix of whole characters that fits with its NUL
        let text = std::str::from_utf8(&h.outbox).unwrap_or_default();
        let mut n = 0;
        for (i, c) in text.char_indices() {
            if i + c.len_utf8() < cap {
                n = i + c.len_utf8();
            } else {
                break;
            }
        }
        if n == 0 && !text.is_empty() {
            let need = text.chars().next().map_or(1, char::len_utf8) + 1;
            // SAFETY: out_len is non-null (checked above).
            unsafe { *out_len = need };
            return Err((
                TMAC_ERR_BUFFER_TOO_SMALL,
                format!("the next character needs a buffer of {need} bytes, got {cap}"),
            ));
        }
        // SAFETY: buf has cap writable bytes and n + 1 <= cap (n < cap by construction above,
        // or n == 0 with cap checked).
        unsafe {
            std::ptr::copy_nonoverlapping(h.outbox.as_ptr(), buf as *mut u8, n);
            if n < cap {
                *buf.add(n) = 0;
            }
            *out_len = n;
        }
        h.outbox.drain(..n);
        Ok(TMAC_OK)
    })
}

/// Forget the conversation (context, chat state, pending text); keeps model and settings.
#[no_mangle]
pub extern "C" fn tmac_reset(t: *mut tmac) -> tmac_status {
    with_handle(t, |h| {
        h.session.reset();
        h.outbox.clear();
        Ok(TMAC_OK)
    })
}

fn set_sampler(t: *mut tmac, f: impl FnOnce(&mut SamplerParams)) -> tmac_status {
    with_handle(t, |h| {
        let mut p = h.session.sampler.params.clone();
        f(&mut p);
        h.session.set_sampler(p).map_err(err)?;
        Ok(TMAC_OK)
    })
}

/// Temperature (>= 0; 0 = greedy).
#[no_mangle]
pub extern "C" fn tmac_set_temperature(t: *mut tmac, temperature: f32) -> tmac_status {
    set_sampler(t, |p| p.temperature = temperature)
}

/// Top-k (0 = off).
#[no_mangle]
pub extern "C" fn tmac_set_top_k(t: *mut tmac, top_k: u32) -> tmac_status {
    set_sampler(t, |p| p.top_k = top_k as usize)
}

/// Top-p (0 < p <= 1; 1 = off).
#[no_mangle]
pub extern "C" fn tmac_set_top_p(t: *mut tmac, top_p: f32) -> tmac_status {
    set_sampler(t, |p| p.top_p = top_p)
}

/// Seed of the sampler's random generator; restarts its sequence (also with the same seed).
#[no_mangle]
pub extern "C" fn tmac_set_seed(t: *mut tmac, seed: u64) -> tmac_status {
    with_handle(t, |h| {
        h.session.set_seed(seed);
        Ok(TMAC_OK)
    })
}

/// Describe the model. Set `info->struct_size = sizeof(tmac_info)` first; a caller compiled
/// against an older, smaller `tmac_info` gets its fields filled and its `struct_size` kept.
#[no_mangle]
pub extern "C" fn tmac_model_info(t: *mut tmac, info: *mut tmac_info) -> tmac_status {
    with_handle(t, |h| {
        if info.is_null() {
            return Err((TMAC_ERR_NULL_ARG, "tmac_model_info: info is NULL".into()));
        }
        // SAFETY: info is non-null; struct_size is read before anything is written.
        let size = unsafe { std::ptr::addr_of!((*info).struct_size).read_unaligned() } as usize;
        if size < 8 {
            return Err((
                TMAC_ERR_INVALID_ARG,
                "tmac_info.struct_size is not set".into(),
            ));
        }
        let m = &h.session.model;
        let c = &m.cfg;
        let n = size.min(std::mem::size_of::<tmac_info>());
        let v = tmac_info {
            struct_size: n as u32,
            n_vocab: c.n_vocab as u32,
            n_embd: c.n_embd as u32,
            n_layer: c.n_layer as u32,
            n_head: c.n_head as u32,
            n_head_kv: c.n_head_kv as u32,
            n_ff: c.n_ff as u32,
            n_ctx: h.session.n_ctx() as u32,
            n_ctx_train: c.n_ctx_train as u32,
            bits_per_weight: m.bits_per_weight() as f32,
            file_size: m.file_size() as u64,
            architecture: h.info_strings[0].as_ptr(),
            kernel: h.info_strings[1].as_ptr(),
        };
        // SAFETY: info points to at least struct_size writable bytes; n <= both sizes.
        unsafe {
            std::ptr::copy_nonoverlapping(&v as *const tmac_info as *const u8, info as *mut u8, n)
        };
        Ok(TMAC_OK)
    })
}

/// Install the log callback (NULL to remove it): the library prints nothing itself, and says
/// what it could not apply (e.g. a bad `TMAC_TABLES` under `TMAC_FLAG_READ_ENV`) only here.
/// Process-wide; it may be called from any thread that uses tmac.
#[no_mangle]
pub extern "C" fn tmac_set_log(f: tmac_log_fn, user_data: *mut c_void) {
    let _ = catch_unwind(|| {
        let mut l = LOGGER.lock().unwrap_or_else(|p| p.into_inner());
        *l = Logger {
            f,
            user_data: user_data as usize,
        };
    });
}

/// A C abort callback and its user data, asked from the thread running the handle.
struct CAbort {
    f: extern "C" fn(*mut c_void) -> i32,
    user_data: usize,
}

/// Install an abort callback on `t` (NULL to remove it). A prompt (`tmac_prompt`,
/// `tmac_prompt_chat`, `tmac_eval`) asks it before each layer of each batch of up to 64 tokens;
/// nonzero stops the call with `TMAC_ERR_ABORTED`, leaving the handle as it was before the call.
#[no_mangle]
pub extern "C" fn tmac_set_abort(
    t: *mut tmac,
    f: tmac_abort_fn,
    user_data: *mut c_void,
) -> tmac_status {
    with_handle(t, |h| {
        let check = f.map(|f| {
            let a = CAbort {
                f,
                user_data: user_data as usize,
            };
            Arc::new(move || (a.f)(a.user_data as *mut c_void) != 0) as crate::session::AbortCheck
        });
        h.session.set_abort(check);
        Ok(TMAC_OK)
    })
}

/// Why the last generation ended (`TMAC_STOP_NONE` while one goes on or before any), or, after
/// an aborted prompt, `TMAC_STOP_ABORTED`. A NULL handle gives `TMAC_STOP_NONE`.
#[no_mangle]
pub extern "C" fn tmac_stop_reason(t: *const tmac) -> tmac_stop {
    use crate::session::StopReason as R;
    // SAFETY: t is NULL or a live handle (the caller's contract).
    let Some(h) = (unsafe { t.as_ref() }) else {
        return tmac_stop::TMAC_STOP_NONE;
    };
    match h.session.stop_reason() {
        None => tmac_stop::TMAC_STOP_NONE,
        Some(R::EndOfText) => tmac_stop::TMAC_STOP_END_OF_TEXT,
        Some(R::Limit) => tmac_stop::TMAC_STOP_MAX_TOKENS,
        Some(R::ContextFull) => tmac_stop::TMAC_STOP_CONTEXT_FULL,
        Some(R::StopSequence) => tmac_stop::TMAC_STOP_SEQUENCE,
        Some(R::Aborted) => tmac_stop::TMAC_STOP_ABORTED,
    }
}

/// Stop generating when the text reaches any of the `n` NUL-terminated UTF-8 strings in
/// `stops` (which may be NULL when `n` is 0: no stop sequences). The stop sequence is not part
/// of the output; text that may begin one is held back until it is decided.
#[no_mangle]
pub extern "C" fn tmac_set_stop(
    t: *mut tmac,
    stops: *const *const c_char,
    n: usize,
) -> tmac_status {
    with_handle(t, |h| {
        if stops.is_null() && n > 0 {
            return Err((TMAC_ERR_NULL_ARG, "tmac_set_stop: stops is NULL".into()));
        }
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: stops points to n pointers (the caller's contract).
            let p = unsafe { *stops.add(i) };
            if p.is_null() {
                return Err((TMAC_ERR_NULL_ARG, format!("stop sequence {i} is NULL")));
            }
            // SAFETY: p is non-null and NUL-terminated (the caller's contract).
            let s = unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
                (
                    TMAC_ERR_INVALID_ARG,
                    format!("stop sequence {i} is not valid UTF-8"),
                )
            })?;
            v.push(s.to_string());
        }
        h.session.set_stop(v);
        Ok(TMAC_OK)
    })
}

/// Tokens per generation from now on (0 = until end of text or context), as
/// `tmac_params.max_tokens`.
#[no_mangle]
pub extern "C" fn tmac_set_max_tokens(t: *mut tmac, max_tokens: u32) -> tmac_status {
    with_handle(t, |h| {
        h.session.set_max_tokens(max_tokens as usize);
        Ok(TMAC_OK)
    })
}

/// `tmac_tokenize` flag: add BOS (and EOS) as the model asks.
pub const TMAC_TOKENIZE_ADD_SPECIAL: u32 = 1;
/// `tmac_tokenize` flag: control-token text (`<|im_end|>`) becomes the control token.
pub const TMAC_TOKENIZE_PARSE_SPECIAL: u32 = 2;

/// Token ids of `len` bytes of UTF-8 text, into `tokens` (room for `cap`); `*n_out` is how
/// many. If `cap` is too small, returns `TMAC_ERR_BUFFER_TOO_SMALL` with `*n_out` the count
/// needed (call again with that much room; `tokens` may be NULL when `cap` is 0). `flags`:
/// `TMAC_TOKENIZE_*` bits.
#[no_mangle]
pub extern "C" fn tmac_tokenize(
    t: *mut tmac,
    utf8: *const c_char,
    len: usize,
    flags: u32,
    tokens: *mut i32,
    cap: usize,
    n_out: *mut usize,
) -> tmac_status {
    with_handle(t, |h| {
        if n_out.is_null() || (tokens.is_null() && cap > 0) {
            return Err((
                TMAC_ERR_NULL_ARG,
                "tmac_tokenize: tokens or n_out is NULL".into(),
            ));
        }
        if flags & !(TMAC_TOKENIZE_ADD_SPECIAL | TMAC_TOKENIZE_PARSE_SPECIAL) != 0 {
            return Err((
                TMAC_ERR_INVALID_ARG,
                format!("tmac_tokenize: unknown flags {flags:#x}"),
            ));
        }
        let text = text_arg(utf8, len, "text")?;
        let ids = h.session.model.vocab.encode(
            text,
            flags & TMAC_TOKENIZE_ADD_SPECIAL != 0,
            flags & TMAC_TOKENIZE_PARSE_SPECIAL != 0,
        );
        // SAFETY: n_out is non-null (checked above).
        unsafe { *n_out = ids.len() };
        if ids.len() > cap {
            return Err((
                TMAC_ERR_BUFFER_TOO_SMALL,
                format!("{} tokens do not fit in {cap}", ids.len()),
            ));
        }
        for (i, &id) in ids.iter().enumerate() {
            // SAFETY: tokens has room for cap >= ids.len() values (the caller's contract).
            unsafe { *tokens.add(i) = id as i32 };
        }
        Ok(TMAC_OK)
    })
}

/// Borrow `n` token ids at `tokens`, checked against the vocabulary.
fn token_arg<'a>(
    h: &tmac,
    tokens: *const i32,
    n: usize,
) -> Result<&'a [i32], (tmac_status, String)> {
    if tokens.is_null() {
        return if n == 0 {
            Ok(&[])
        } else {
            Err((TMAC_ERR_NULL_ARG, "tokens is NULL".into()))
        };
    }
    // SAFETY: tokens points to n readable ids (the caller's contract).
    let ids = unsafe { std::slice::from_raw_parts(tokens, n) };
    let n_vocab = h.session.model.cfg.n_vocab;
    if let Some(&bad) = ids.iter().find(|&&id| id < 0 || id as usize >= n_vocab) {
        return Err((
            TMAC_ERR_INVALID_ARG,
            format!("token id {bad} is outside the vocabulary of {n_vocab}"),
        ));
    }
    Ok(ids)
}

/// The text of `n` token ids, as bytes into `buf` (room for `cap`, NUL-terminated), `*out_len`
/// bytes long without the NUL. Ids that split a character give its bytes as they are, so a
/// piece may not be valid UTF-8 on its own. If `cap` is too small, returns
/// `TMAC_ERR_BUFFER_TOO_SMALL` with `*out_len` the room needed (NUL included).
#[no_mangle]
pub extern "C" fn tmac_detokenize(
    t: *mut tmac,
    tokens: *const i32,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> tmac_status {
    with_handle(t, |h| {
        if out_len.is_null() || (buf.is_null() && cap > 0) {
            return Err((
                TMAC_ERR_NULL_ARG,
                "tmac_detokenize: buf or out_len is NULL".into(),
            ));
        }
        let ids = token_arg(h, tokens, n)?;
        let v = &h.session.model.vocab;
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| v.piece(id as u32).to_vec())
            .collect();
        if bytes.len() + 1 > cap {
            // SAFETY: out_len is non-null (checked above).
            unsafe { *out_len = bytes.len() + 1 };
            return Err((
                TMAC_ERR_BUFFER_TOO_SMALL,
                format!("the text needs {} bytes, got {cap}", bytes.len() + 1),
            ));
        }
        // SAFETY: buf has cap >= bytes.len() + 1 writable bytes; out_len is non-null.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
            *buf.add(bytes.len()) = 0;
            *out_len = bytes.len();
        }
        Ok(TMAC_OK)
    })
}

/// Run `n` token ids through the model without generating (no BOS is added): to score a
/// text, or to read `tmac_logits` after it. Like `tmac_prompt`, all or nothing.
#[no_mangle]
pub extern "C" fn tmac_eval(t: *mut tmac, tokens: *const i32, n: usize) -> tmac_status {
    with_handle(t, |h| {
        let ids: Vec<u32> = token_arg(h, tokens, n)?.iter().map(|&i| i as u32).collect();
        h.session.feed(&ids).map_err(err)?;
        h.outbox.clear();
        Ok(TMAC_OK)
    })
}

/// How many tokens the context holds now (prompts, generated and evaluated tokens since the
/// last `tmac_reset`), into `*n`.
#[no_mangle]
pub extern "C" fn tmac_context_used(t: *mut tmac, n: *mut usize) -> tmac_status {
    with_handle(t, |h| {
        if n.is_null() {
            return Err((TMAC_ERR_NULL_ARG, "tmac_context_used: n is NULL".into()));
        }
        // SAFETY: n is non-null (checked above).
        unsafe { *n = h.session.pos() };
        Ok(TMAC_OK)
    })
}

/// The logits after the last token run (`n_vocab` floats, one per token id): `*out` points
/// into the handle, valid until the next call on it. `TMAC_ERR_STATE` before any token.
#[no_mangle]
pub extern "C" fn tmac_logits(
    t: *mut tmac,
    out: *mut *const f32,
    n_vocab: *mut usize,
) -> tmac_status {
    with_handle(t, |h| {
        if out.is_null() || n_vocab.is_null() {
            return Err((
                TMAC_ERR_NULL_ARG,
                "tmac_logits: out or n_vocab is NULL".into(),
            ));
        }
        let l = h.session.logits();
        if l.is_empty() {
            return Err((
                TMAC_ERR_STATE,
                "no logits: run a prompt or tokens first".into(),
            ));
        }
        // SAFETY: out and n_vocab are non-null (checked above).
        unsafe {
            *out = l.as_ptr();
            *n_vocab = l.len();
        }
        Ok(TMAC_OK)
    })
}

/// The message of the last error on `t`, or, when `t` is NULL, of the last failed load (or
/// NULL-handle call) on this thread. Never NULL; "" when there was no error. Valid until the
/// next call with the same handle (or on this thread).
#[no_mangle]
pub extern "C" fn tmac_last_error(t: *const tmac) -> *const c_char {
    // SAFETY: t is NULL or a live handle (the caller's contract).
    match unsafe { t.as_ref() } {
        Some(h) => h.last_error.as_ptr(),
        None => LAST_ERROR.with(|e| e.borrow().as_ptr()),
    }
}

/// A short static description of a status code.
#[no_mangle]
pub extern "C" fn tmac_status_str(s: i32) -> *const c_char {
    let msg: &'static [u8] = match s {
        0 => b"ok\0",
        1 => b"done\0",
        -1 => b"null argument\0",
        -2 => b"invalid argument\0",
        -3 => b"cannot read file\0",
        -4 => b"malformed model file\0",
        -5 => b"unsupported model\0",
        -6 => b"context full\0",
        -7 => b"buffer too small\0",
        -8 => b"limit exceeded\0",
        -9 => b"call not valid in this state\0",
        -10 => b"aborted\0",
        -100 => b"internal error\0",
        _ => b"unknown status\0",
    };
    msg.as_ptr() as *const c_char
}

/// The library version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn tmac_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// `TMAC_ABI_VERSION` of the library actually loaded (compare with the header's).
#[no_mangle]
pub extern "C" fn tmac_abi_version() -> u32 {
    TMAC_ABI_VERSION
}

/// Free a handle and everything it owns. NULL is fine. Never free a handle twice.
#[no_mangle]
pub extern "C" fn tmac_free(t: *mut tmac) {
    if t.is_null() {
        return;
    }
    // SAFETY: t came from Box::into_raw in this library and is freed once (caller's contract).
    let h = unsafe { Box::from_raw(t) };
    // dropping cannot panic in tmac's types, but the boundary stays guarded anyway
    let _ = catch_unwind(AssertUnwindSafe(move || drop(h)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{tiny_llama, TinySpec};

    fn tiny_handle() -> *mut tmac {
        let bytes: &'static [u8] = Box::leak(tiny_llama(&TinySpec::default()).into_boxed_slice());
        let mut t = std::ptr::null_mut();
        let s = tmac_load_from_memory(
            bytes.as_ptr() as *const c_void,
            bytes.len(),
            std::ptr::null(),
            &mut t,
        );
        assert_eq!(s, TMAC_OK);
        t
    }

    #[test]
    fn a_panic_poisons_the_handle_instead_of_aborting() {
        let t = tiny_handle();
        let s = with_handle(t, |_| panic!("boom"));
        assert_eq!(s, TMAC_ERR_PANIC);
        // SAFETY: tmac_last_error returns a valid NUL-terminated string owned by the handle.
        let msg = unsafe { CStr::from_ptr(tmac_last_error(t)) }
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("boom"), "{msg}");
        let p = b"hello";
        assert_eq!(
            tmac_prompt(t, p.as_ptr() as *const c_char, p.len()),
            TMAC_ERR_PANIC
        );
        assert_eq!(tmac_reset(t), TMAC_ERR_PANIC);
        tmac_free(t);
    }

    #[test]
    fn params_honour_struct_size() {
        let mut p = tmac_params_default();
        p.n_ctx = 32;
        p.seed = 7;
        // an older caller that only knew the first two fields
        p.struct_size = 8;
        let q = read_params(&p).unwrap();
        assert_eq!((q.n_ctx, q.seed), (32, default_params().seed));
        p.struct_size = PARAMS_V1_SIZE as u32 + 64; // a newer caller: extra fields ignored
        assert_eq!(read_params(&p).unwrap().seed, 7);
        p.struct_size = 4;
        assert!(read_params(&p).is_err());
    }

    #[test]
    fn status_strings_cover_every_status() {
        for s in [
            TMAC_OK,
            TMAC_DONE,
            TMAC_ERR_NULL_ARG,
            TMAC_ERR_INVALID_ARG,
            TMAC_ERR_IO,
            TMAC_ERR_BAD_MODEL,
            TMAC_ERR_UNSUPPORTED,
            TMAC_ERR_CONTEXT_FULL,
            TMAC_ERR_BUFFER_TOO_SMALL,
            TMAC_ERR_LIMIT,
            TMAC_ERR_STATE,
            TMAC_ERR_ABORTED,
            TMAC_ERR_PANIC,
        ] {
            // SAFETY: tmac_status_str returns a static NUL-terminated string.
            let msg = unsafe { CStr::from_ptr(tmac_status_str(s as i32)) };
            assert_ne!(msg.to_bytes(), b"unknown status", "{s:?}");
        }
    }
}
