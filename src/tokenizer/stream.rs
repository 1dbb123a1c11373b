//! Streaming detokenization: token pieces are bytes, and a character can span several tokens
//! (emoji, CJK). `Utf8Stream` releases only whole characters and holds back a partial one.

#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Add a piece; returns the text that is now complete. Bytes that can never become valid
    /// UTF-8 come out as U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..good]).unwrap_or_default());
                    match e.error_len() {
                        // an incomplete character at the end: keep it for the next piece
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..good + bad);
                        }
                    }
                }
            }
        }
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// End of stream: anything still held back is an incomplete character.
    pub fn finish(&mut self) -> String {
        let had = !self.pending.is_empty();
        self.pending.clear();
        if had {
            "\u{FFFD}".to_string()
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Stream;

    #[test]
    fn holds_back_partial_characters() {
        let mut s = Utf8Stream::default();
        let emoji = "😀".as_bytes();
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&emoji[..1]), "");
        assert_eq!(s.push(&emoji[1..3]), "");
        assert_eq!(s.pending(), 3);
        assert_eq!(s.push(&emoji[3..]), "😀");
        assert_eq!(s.push(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(s.push(&"中".as_bytes()[..2]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
        assert_eq!(s.finish(), "");
    }
}
