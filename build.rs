//! Gives the shared library a SONAME carrying the ABI number (libtmac.so.N), read from
//! `TMAC_ABI_VERSION` in src/capi.rs so the number is written in one place only.

fn main() {
    println!("cargo:rerun-if-changed=src/capi.rs");
    let capi = std::fs::read_to_string("src/capi.rs").expect("read src/capi.rs");
    let abi = capi
        .lines()
        .find_map(|l| l.strip_prefix("pub const TMAC_ABI_VERSION: u32 = "))
        .and_then(|v| v.trim_end_matches(';').trim().parse::<u32>().ok())
        .expect("src/capi.rs defines TMAC_ABI_VERSION");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtmac.so.{abi}");
    }
}
