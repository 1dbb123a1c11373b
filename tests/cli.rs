//! The `tmac` tool as a user meets it: help and version, mistakes answered in one line, the
//! prompt from a pipe or a file, stop sequences, and a reader that goes away (`| head`).

mod common;
use common::{smollm2, tmac_cli};
use std::io::{Read, Write};
use std::process::Stdio;

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: Option<&str>) -> (bool, String, String) {
    let mut c = tmac_cli();
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_version_and_mistakes() {
    let (ok, out, _) = run(&["--version"], None);
    assert!(
        ok && out.starts_with("tmac ") && out.contains(tmac::VERSION),
        "{out}"
    );
    for cmd in [
        "run",
        "info",
        "tokenize",
        "bench",
        "tune",
        "perplexity",
        "quantize",
        "export",
    ] {
        let (ok, out, err) = run(&[cmd, "--help"], None);
        assert!(
            ok && out.contains("usage: tmac"),
            "{cmd} --help: {out} {err}"
        );
        let (ok, _, err) = run(&[cmd, "-h"], None);
        assert!(ok, "{cmd} -h: {err}");
    }
    let (ok, _, err) = run(&["runn", "m.gguf"], None);
    assert!(!ok && err.contains("did you mean 'run'"), "{err}");
    let m = smollm2();
    let m = m.to_str().unwrap();
    let (ok, _, err) = run(&["run", m, "--bogus"], None);
    assert!(
        !ok && err.trim().lines().count() == 1 && err.contains("--bogus"),
        "{err}"
    );
    let (ok, _, err) = run(&["bench", m, "--bogus"], None);
    assert!(!ok && err.contains("tmac bench --help"), "{err}");
}

#[test]
fn prompt_from_a_pipe_a_file_or_dash() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    let q = "The capital of France is";
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["run", m, "-n", "8", "-t", "0"].map(String::from).to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (ok, direct, err) = run(&args(&["-i", q]), None);
    assert!(ok && direct.contains("Paris"), "{direct} {err}");
    // as `echo` and editors write them: the final newline is not part of the prompt
    let line = format!("{q}\n");
    let (ok, piped, _) = run(&args(&[]), Some(&line));
    assert!(ok && piped == direct, "piped: {piped:?} vs {direct:?}");
    let (ok, dash, _) = run(&args(&["-i", "-"]), Some(&format!("{q}\r\n")));
    assert!(ok && dash == direct, "-i -: {dash:?}");
    let f = std::env::temp_dir().join(format!("tmac-prompt-{}.txt", std::process::id()));
    std::fs::write(&f, &line).unwrap();
    let (ok, file, _) = run(&args(&["-f", f.to_str().unwrap()]), None);
    std::fs::remove_file(&f).ok();
    assert!(ok && file == direct, "-f: {file:?}");
    // a chat message from an empty pipe is a mistake, not an empty message to answer
    let (ok, _, err) = run(&["run", m, "--chat"], Some(""));
    assert!(!ok && err.contains("empty message"), "{err}");
    // --stop ends the text before the stop sequence
    let at = direct.find("Paris").unwrap();
    let (ok, cut, err) = run(&args(&["-i", q, "--stop", "Paris"]), None);
    assert!(
        ok && cut.trim_end() == direct[..at].trim_end(),
        "{cut:?} {direct:?}"
    );
    assert!(err.contains("stop: stop sequence"), "{err}");
}

#[test]
fn a_reader_that_goes_away_ends_the_tool_quietly() {
    let m = smollm2();
    let mut child = tmac_cli()
        .args([
            "run",
            m.to_str().unwrap(),
            "-i",
            "Once upon a time",
            "-n",
            "300",
            "-t",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // as `| head -c 8` does
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}: {err}");
    assert!(!err.contains("Broken pipe"), "{err}");
}
