//! Codepoint categories for the pre-tokenizers, from the generated range table.

use super::unicode_data::RANGES;

// Category flags (the table also has 0x01 undefined, 0x08 separator, 0x10 mark,
// 0x20 punctuation, 0x40 symbol, 0x80 control)
pub(crate) const NUMBER: u8 = 0x02;
pub(crate) const LETTER: u8 = 0x04;

/// The category flag of `c` (exactly one of the category bits).
pub(crate) fn flags(c: char) -> u8 {
    let cp = c as u32;
    let i = RANGES.partition_point(|&(start, _)| start <= cp);
    // RANGES starts at 0, so i >= 1.
    RANGES[i.saturating_sub(1)].1
}

/// Unicode White_Space, the set llama.cpp's `\s` means.
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F
            | 0x205F | 0x3000
    )
}

/// GPT-2's reversible byte-to-character map: printable bytes map to themselves; the 68
/// others (0x00-0x20, 0x7F-0xA0, 0xAD), in order, to U+0100 upwards.
pub fn byte_to_char(b: u8) -> char {
    let n = match b {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => return b as char,
        0x00..=0x20 => b as u32,
        0x7F..=0xA0 => 33 + (b - 0x7F) as u32,
        _ => 67, // 0xAD
    };
    char::from_u32(256 + n).unwrap_or('\u{FFFD}')
}

/// The inverse of `byte_to_char`.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    match c as u32 {
        cp @ (0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) => Some(cp as u8),
        cp @ 256..=288 => Some((cp - 256) as u8),
        cp @ 289..=322 => Some((cp - 289 + 0x7F) as u8),
        323 => Some(0xAD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const UNDEFINED: u8 = 0x01;
    const ACCENT_MARK: u8 = 0x10;
    const PUNCTUATION: u8 = 0x20;
    const SYMBOL: u8 = 0x40;

    #[test]
    fn categories() {
        assert_eq!(flags('a'), LETTER);
        assert_eq!(flags('é'), LETTER);
        assert_eq!(flags('中'), LETTER);
        assert_eq!(flags('7'), NUMBER);
        assert_eq!(flags('٣'), NUMBER);
        assert_eq!(flags('!'), PUNCTUATION);
        assert_eq!(flags('+'), SYMBOL);
        assert_eq!(flags('😀'), SYMBOL);
        assert_eq!(flags('\u{301}'), ACCENT_MARK);
        assert_eq!(flags('\u{10FFFF}'), UNDEFINED);
        assert!(is_whitespace('\u{3000}') && !is_whitespace('x'));
    }

    #[test]
    fn byte_map_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
    }
}
