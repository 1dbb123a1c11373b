//! SentencePiece-style BPE (LLaMA 1/2 vocabularies): spaces become U+2581, characters are merged
//! highest-score pair first (leftmost on ties) while the merged text is a token, and characters
//! that never became a token fall back to `<0xNN>` byte tokens.

use super::symbols::{merge, split_chars, Symbol};
use super::Vocab;
use std::collections::BinaryHeap;

pub(super) const SPACE: &str = "\u{2581}";

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}
impl Eq for Bigram {}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // max-heap on score; on equal scores the leftmost pair wins
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Tokenize `text` (spaces already escaped to U+2581), appending ids to `out`.
pub(super) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let bytes = text.as_bytes();
    let mut syms = split_chars(text);
    let mut queue = BinaryHeap::new();
    let try_add = |syms: &[Symbol], l: Option<usize>, r: Option<usize>, q: &mut BinaryHeap<_>| {
        let (Some(l), Some(r)) = (l, r) else { return };
        let (a, b) = (&syms[l], &syms[r]);
        let piece = &bytes[a.start..a.start + a.len + b.len];
        if let Some(id) = vocab.id(piece) {
            q.push(Bigram {
                score: vocab.scores[id as usize],
                left: l,
                right: r,
                size: piece.len(),
            });
        }
    };
    for i in 1..syms.len() {
        try_add(&syms, Some(i - 1), Some(i), &mut queue);
    }
    while let Some(bg) = queue.pop() {
        let (l, r) = (bg.left, bg.right);
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != bg.size {
            continue;
        }
        let (prev, next) = merge(&mut syms, l, r);
        try_add(&syms, prev, Some(l), &mut queue);
        try_add(&syms, Some(l), next, &mut queue);
    }
    for s in syms.iter().filter(|s| s.len > 0) {
        let piece = &bytes[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.iter().filter_map(|&b| vocab.byte_token(b))),
        }
    }
}
