//! Every input a fuzzer ever crashed on (fuzz/regressions/<target>/), replayed through the same
//! code the fuzz target runs. `make fuzz` finds them; copy a crash file here to keep it fixed.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn fuzz_crashes_stay_fixed() {
    use tmac::testing::fuzz;
    let n = replay("model_file", fuzz::model_file)
        + replay("tokenizer", fuzz::tokenizer)
        + replay("capi", fuzz::capi);
    eprintln!("replayed {n} fuzz regression inputs");
}

#[test]
fn fuzz_bodies_accept_ordinary_inputs() {
    use tmac::testing::fuzz;
    let tiny = tmac::testing::tiny_llama(&Default::default());
    fuzz::model_file(&tiny);
    fuzz::model_file(&tiny[..tiny.len() / 3]);
    fuzz::tokenizer("Hello <|im_start|> wörld 😀 12345\n\n  x".as_bytes());
    fuzz::capi(&[
        8, 4, 0, b'h', b'i', 2, 8, 0, 2, 1, 0, 3, 0, 0, 1, b'y', b'o', 2, 2, 0,
    ]);
}
