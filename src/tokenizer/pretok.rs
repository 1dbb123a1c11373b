//! Pre-tokenizers: split text into words before BPE, exactly as llama.cpp splits for each
//! `tokenizer.ggml.pre`. The regexes are hand-coded scanners (as llama.cpp's own custom
//! splitters are), which keeps tmac free of a regex engine.

use super::unicode::{flags, is_whitespace, LETTER, NUMBER};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTok {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// Every digit on its own, then GPT-2's regex (smollm, starcoder, refact, command-r).
    DigitsThenGpt2,
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// Qwen2: Llama 3's regex with single digits.
    Qwen2,
}

impl PreTok {
    /// The splitter for a `tokenizer.ggml.pre` value, as llama.cpp maps them.
    pub fn from_name(name: &str) -> Option<PreTok> {
        Some(match name {
            "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion"
            | "granite-docling" | "mellum" | "modern-bert" | "roberta-bpe" | "jina-es"
            | "jina-de" | "jina-v2-es" | "jina-v2-de" | "gigachat" | "a.x-4.0" => PreTok::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => PreTok::DigitsThenGpt2,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => PreTok::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "hunyuan" => {
                PreTok::Qwen2
            }
            _ => return None,
        })
    }

    /// Llama 3 style vocabularies look a whole word up before merging (`ignore_merges`).
    pub fn ignores_merges(self) -> bool {
        self == PreTok::Llama3
    }

    /// Split `text` into words; returns the words as string slices of `text`.
    pub fn split(self, text: &str) -> Vec<&str> {
        let cps: Vec<(usize, char)> = text.char_indices().collect();
        let mut lens = Vec::new();
        match self {
            PreTok::Gpt2 => gpt2(&cps, 0, cps.len(), &mut lens),
            PreTok::Llama3 => llama3(&cps, 0, cps.len(), 3, &mut lens),
            PreTok::Qwen2 => llama3(&cps, 0, cps.len(), 1, &mut lens),
            PreTok::DigitsThenGpt2 => {
                // first pass: isolate every number codepoint; second pass: GPT-2 on each piece
                let mut start = 0;
                for i in 0..cps.len() {
                    if flags(cps[i].1) == NUMBER {
                        gpt2(&cps, start, i, &mut lens);
                        lens.push(1);
                        start = i + 1;
                    }
                }
                gpt2(&cps, start, cps.len(), &mut lens);
            }
        }
        let mut words = Vec::with_capacity(lens.len());
        let mut at = 0;
        for n in lens {
            let begin = cps[at].0;
            at += n;
            let end = cps.get(at).map_or(text.len(), |c| c.0);
            words.push(&text[begin..end]);
        }
        words
    }
}

/// A window [ini, end) of codepoints; reads outside it see "nothing" (no flags).
struct Window<'a> {
    cps: &'a [(usize, char)],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Window<'_> {
    fn cp(&self, pos: usize) -> Option<char> {
        (self.ini <= pos && pos < self.end).then(|| self.cps[pos].1)
    }
    fn flags(&self, pos: usize) -> u8 {
        self.cp(pos).map_or(0, flags)
    }
    fn ws(&self, pos: usize) -> bool {
        self.cp(pos).is_some_and(is_whitespace)
    }
    fn letter(&self, pos: usize) -> bool {
        self.flags(pos) == LETTER
    }
    fn number(&self, pos: usize) -> bool {
        self.flags(pos) == NUMBER
    }
    /// `[^\s\p{L}\p{N}]`: inside the window and not whitespace, letter or number.
    fn other(&self, pos: usize) -> bool {
        self.cp(pos).is_some() && !self.ws(pos) && !self.letter(pos) && !self.number(pos)
    }
    /// Emit the word [prev_end, end); returns its length.
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
    /// `'s|'t|'re|'ve|'m|'ll|'d` at pos (case-insensitive if asked): the match length.
    fn contraction(&self, pos: usize, fold: bool) -> usize {
        if self.cp(pos) != Some('\'') {
            return 0;
        }
        let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
        let (a, b) = (low(self.cp(pos + 1)), low(self.cp(pos + 2)));
        match (a, b) {
            (Some('s' | 't' | 'm' | 'd'), _) => 2,
            (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
            _ => 0,
        }
    }
    /// The trailing whitespace rules shared by both regexes: `\s+(?!\S)|\s+`. Returns false if
    /// there is no whitespace at pos.
    fn whitespace_run(&mut self, pos: &mut usize) -> bool {
        let mut n = 0;
        while self.ws(*pos + n) {
            n += 1;
        }
        if n > 1 && self.cp(*pos + n).is_some() {
            *pos += n - 1; // leave the last space to prefix the next word
        } else if n > 0 {
            *pos += n;
        } else {
            return false;
        }
        self.add(*pos);
        true
    }
}

fn gpt2(cps: &[(usize, char)], ini: usize, end: usize, out: &mut Vec<usize>) {
    let mut w = Window {
        cps,
        ini,
        end,
        prev_end: ini,
        out,
    };
    let mut pos = ini;
    while pos < end {
        let n = w.contraction(pos, false);
        if n > 0 {
            pos += w.add(pos + n);
            continue;
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let space = w.cp(pos) == Some(' ');
        let q = pos + space as usize;
        let class = [Window::letter, Window::number, Window::other]
            .into_iter()
            .find(|f| f(&w, q));
        if let Some(class) = class {
            pos = q;
            while class(&w, pos) {
                pos += 1;
            }
            w.add(pos);
            continue;
        }
        if !w.whitespace_run(&mut pos) {
            pos += 1;
            w.add(pos);
        }
    }
}

/// Llama 3 (max_digits 3) and Qwen2 (max_digits 1).
fn llama3(cps: &[(usize, char)], ini: usize, end: usize, max_digits: usize, out: &mut Vec<usize>) {
    let mut w = Window {
        cps,
        ini,
        end,
        prev_end: ini,
        out,
    };
    let mut pos = ini;
    while pos < end {
        let n = w.contraction(pos, true);
        if n > 0 {
            pos += w.add(pos + n);
            continue;
        }
        let cp = w.cp(pos);
        let crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(crlf(cp) || w.number(pos)) && (w.letter(pos) || w.letter(pos + 1)) {
            pos += 1;
            while w.letter(pos) {
                pos += 1;
            }
            w.add(pos);
            continue;
        }
        // `\p{N}{1,max_digits}`
        if w.number(pos) {
            let mut run_start = pos;
            while w.number(pos) {
                pos += 1;
                if pos - run_start >= max_digits {
                    w.add(pos);
                    run_start = pos;
                }
            }
            w.add(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let q = pos + (cp == Some(' ')) as usize;
        if w.other(q) && cp.is_some() {
            pos = q;
            while w.other(pos) {
                pos += 1;
            }
            while crlf(w.cp(pos)) {
                pos += 1;
            }
            w.add(pos);
            continue;
        }
        // `\s*[\r\n]+`
        let mut n = 0;
        let mut last_crlf = None;
        while w.ws(pos + n) {
            if crlf(w.cp(pos + n)) {
                last_crlf = Some(pos + n + 1);
            }
            n += 1;
        }
        if let Some(e) = last_crlf {
            pos = e;
            w.add(pos);
            continue;
        }
        if !w.whitespace_run(&mut pos) {
            pos += 1;
            w.add(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PreTok;

    #[test]
    fn gpt2_words() {
        let w = PreTok::Gpt2.split("Hello world's  end\n\n 42x!?");
        assert_eq!(
            w,
            ["Hello", " world", "'s", " ", " end", "\n\n", " 42", "x", "!?"]
        );
    }

    #[test]
    fn smollm_isolates_digits() {
        let w = PreTok::DigitsThenGpt2.split("in 2024!");
        assert_eq!(w, ["in", " ", "2", "0", "2", "4", "!"]);
    }

    #[test]
    fn llama3_words() {
        let w = PreTok::Llama3.split("I'LL pay 12345 now.\r\n  ok");
        assert_eq!(
            w,
            ["I", "'LL", " pay", " ", "123", "45", " now", ".\r\n", " ", " ok"]
        );
    }
}
