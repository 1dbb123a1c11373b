//! The doubly linked list of symbols both BPE variants merge: each symbol is a byte range of the
//! word; merging absorbs the right neighbour into the left one.

pub(super) struct Symbol {
    pub start: usize,
    pub len: usize,
    pub prev: Option<usize>,
    pub next: Option<usize>,
}

/// One symbol per character of `text`.
pub(super) fn split_chars(text: &str) -> Vec<Symbol> {
    let mut syms: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: Some(i + 1),
        })
        .collect();
    if let Some(last) = syms.last_mut() {
        last.next = None;
    }
    syms
}

/// Merge symbol `r` into its left neighbour `l`; returns the neighbours of the merged symbol
/// (whose pairs with it are the new merge candidates).
pub(super) fn merge(syms: &mut [Symbol], l: usize, r: usize) -> (Option<usize>, Option<usize>) {
    syms[l].len += syms[r].len;
    syms[r].len = 0;
    let next = syms[r].next;
    syms[l].next = next;
    if let Some(n) = next {
        syms[n].prev = Some(l);
    }
    (syms[l].prev, next)
}
