//! Byte-level BPE (GPT-2 family): each pre-tokenized word is mapped byte-by-byte to printable
//! characters, then adjacent symbols are merged lowest-rank first (leftmost on ties), as
//! llama.cpp's `llm_tokenizer_bpe_session` does.

use super::symbols::{merge, split_chars, Symbol};
use super::unicode::byte_to_char;
use super::Vocab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Merge ranks keyed by "left\u{FF}right" bytes (0xFF never occurs in UTF-8 token text).
pub(super) fn merge_key(buf: &mut Vec<u8>, left: &[u8], right: &[u8]) {
    buf.clear();
    buf.extend_from_slice(left);
    buf.push(0xFF);
    buf.extend_from_slice(right);
}

/// Tokenize one word (already split by the pre-tokenizer), appending ids to `out`.
pub(super) fn encode_word(vocab: &Vocab, word: &str, ignore_merges: bool, out: &mut Vec<u32>) {
    let encoded: String = word.bytes().map(byte_to_char).collect();
    let text = encoded.as_bytes();
    if ignore_merges {
        if let Some(id) = vocab.id(text) {
            out.push(id);
            return;
        }
    }
    let mut syms = split_chars(&encoded);
    // queue entries: (rank, left, right, left len, right len); lens detect stale entries
    let mut queue = BinaryHeap::new();
    let mut key = Vec::new();
    let mut push = |syms: &[Symbol], l: Option<usize>, r: Option<usize>, q: &mut BinaryHeap<_>| {
        let (Some(l), Some(r)) = (l, r) else { return };
        let (a, b) = (&syms[l], &syms[r]);
        merge_key(
            &mut key,
            &text[a.start..a.start + a.len],
            &text[b.start..b.start + b.len],
        );
        if let Some(&rank) = vocab.merges.get(key.as_slice()) {
            q.push(Reverse((rank, l, r, a.len, b.len)));
        }
    };
    for i in 1..syms.len() {
        push(&syms, Some(i - 1), Some(i), &mut queue);
    }
    while let Some(Reverse((_, l, r, llen, rlen))) = queue.pop() {
        if syms[l].len != llen || syms[r].len != rlen || syms[l].next != Some(r) {
            continue; // one side has merged since this pair was queued
        }
        let (prev, next) = merge(&mut syms, l, r);
        push(&syms, prev, Some(l), &mut queue);
        push(&syms, Some(l), next, &mut queue);
    }
    for s in syms.iter().filter(|s| s.len > 0) {
        let piece = &text[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            // llama.cpp falls back to single-byte tokens; only ASCII can match here
            None => out.extend(
                piece
                    .iter()
                    .filter_map(|b| vocab.id(std::slice::from_ref(b))),
            ),
        }
    }
}
