//! Tokens of a message and the masking of their obvious variable parts.
//!
//! A message is split on whitespace into tokens. Each token is further cut at punctuation
//! (`= : , ; ( ) [ ] { } < > " ' |`) into segments; a segment holding a digit (numbers, hex
//! ids, IP addresses, UUIDs, timestamps, paths with numbers...) is masked as `<*>`. The
//! masked token keeps its punctuation and its constant segments: `uid=0` becomes `uid=<*>`,
//! `[10.0.0.1]` becomes `[<*>]`. Masking works on the bytes of the message without
//! allocating; only a new shape pays for building the masked strings.

/// The text a masked segment or a variable token shows in a template.
pub const WILDCARD: &str = "<*>";

/// Marker mixed into a shape hash for a masked segment: not a byte a message can hold in
/// that position of the hash stream.
const MASK_MARK: u64 = 0x9e37_79b9_7f4a_7c15;

/// What a masked token looks like, used to judge whether two different tokens may be two
/// values of one variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Every segment was masked: `1234`, `10.0.0.1:80`, `0x1f`.
    Masked,
    /// Words only (letters with `-`, `_` or `'` inside, between punctuation): the words of
    /// the constant text, `failure;`, `user=root`.
    Word,
    /// Anything else: identifiers with dots or slashes, partly masked tokens, symbols.
    Other,
}

pub(crate) fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b'=' | b':'
            | b','
            | b';'
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'<'
            | b'>'
            | b'"'
            | b'\''
            | b'|'
    )
}

/// Whether a segment (a run of bytes between delimiters) is a variable by its look alone:
/// it holds a digit, or it is the name of a month or a weekday (a date inside the message).
fn segment_is_variable(segment: &[u8]) -> bool {
    segment.iter().any(u8::is_ascii_digit) || is_calendar_word(segment)
}

/// `Jan`, `January`, `MON`, `Monday`...: capitalised or upper-case month and weekday names.
fn is_calendar_word(segment: &[u8]) -> bool {
    const NAMES: [&[u8]; 19] = [
        b"january",
        b"february",
        b"march",
        b"april",
        b"may",
        b"june",
        b"july",
        b"august",
        b"september",
        b"october",
        b"november",
        b"december",
        b"monday",
        b"tuesday",
        b"wednesday",
        b"thursday",
        b"friday",
        b"saturday",
        b"sunday",
    ];
    if segment.len() < 3 || segment.len() > 9 || !segment[0].is_ascii_uppercase() {
        return false;
    }
    let mut lower = [0u8; 9];
    let lower = &mut lower[..segment.len()];
    lower.copy_from_slice(segment);
    lower.make_ascii_lowercase();
    NAMES.iter().any(|name| {
        // The full name, or its three-letter abbreviation (`Sept` and `Thur` too).
        *name == &*lower || (lower.len() <= 4 && name.starts_with(lower))
    })
}

/// Small, fast hash for shape keys (a multiply-rotate mix, in the family of Fx hashes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShapeHasher {
    state: u64,
}

impl ShapeHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    pub(crate) fn new() -> ShapeHasher {
        ShapeHasher { state: 0 }
    }

    #[inline]
    pub(crate) fn write_u64(&mut self, value: u64) {
        self.state = (self.state.rotate_left(5) ^ value).wrapping_mul(Self::SEED);
    }

    #[inline]
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    pub(crate) fn finish(self) -> u64 {
        // A final avalanche so that nearby states spread over the table.
        let mut value = self.state;
        value ^= value >> 33;
        value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
        value ^= value >> 33;
        value
    }
}

/// Feeds the masked form of `token` to `hasher` and tells its kind, without allocating.
#[inline]
pub(crate) fn hash_masked(token: &[u8], hasher: &mut ShapeHasher) -> TokenKind {
    let mut start = 0usize;
    let mut masked_segments = 0usize;
    let mut kept_segments = 0usize;
    let mut all_words = true;
    let mut has_digit = false;
    for index in 0..=token.len() {
        let byte = token.get(index).copied();
        match byte {
            Some(byte) if !is_delimiter(byte) => {
                has_digit |= byte.is_ascii_digit();
                continue;
            }
            _ => {}
        }
        let segment = &token[start..index];
        if !segment.is_empty() {
            if has_digit || is_calendar_word(segment) {
                masked_segments += 1;
                hasher.write_u64(MASK_MARK);
            } else {
                kept_segments += 1;
                all_words &= is_word(segment);
                hasher.write_bytes(segment);
            }
        }
        if let Some(delimiter) = byte {
            hasher.write_u64(u64::from(delimiter) | 0x100);
        }
        start = index + 1;
        has_digit = false;
    }
    hasher.write_u64(0x2000);
    if masked_segments > 0 && kept_segments == 0 {
        TokenKind::Masked
    } else if masked_segments == 0 && kept_segments > 0 && all_words {
        TokenKind::Word
    } else {
        TokenKind::Other
    }
}

/// Letters with inner `-`, `_` or `'`, maybe ending a sentence: `failure`, `pre-auth`,
/// `can't`, `done.`.
fn is_word(segment: &[u8]) -> bool {
    let end = segment
        .iter()
        .rposition(|byte| !matches!(byte, b'.' | b'!' | b'?'))
        .map_or(0, |last| last + 1);
    let core = &segment[..end];
    let Some(first) = core.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || *first >= 0x80)
        && core.iter().all(|byte| {
            byte.is_ascii_alphabetic() || matches!(byte, b'-' | b'_' | b'\'') || *byte >= 0x80
        })
}

/// One segment of a masked token: a word, a variable (`<*>` or any other non-word run), or a
/// delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Word(&'a [u8]),
    Variable,
    Delimiter(u8),
}

/// Walks the parts of a masked token, reading `<*>` as a variable.
fn next_part<'a>(text: &'a [u8], position: &mut usize) -> Option<Part<'a>> {
    let start = *position;
    let rest = text.get(start..)?;
    if rest.is_empty() {
        return None;
    }
    if rest.starts_with(WILDCARD.as_bytes()) {
        *position += WILDCARD.len();
        return Some(Part::Variable);
    }
    if is_delimiter(rest[0]) {
        *position += 1;
        return Some(Part::Delimiter(rest[0]));
    }
    let mut end = start;
    while end < text.len()
        && !is_delimiter(text[end])
        && !text[end..].starts_with(WILDCARD.as_bytes())
    {
        end += 1;
    }
    *position = end;
    let segment = &text[start..end];
    if is_word(segment) {
        Some(Part::Word(segment))
    } else {
        Some(Part::Variable)
    }
}

/// The fixed parts of a masked token (its words and punctuation, variables left out), hashed,
/// with how many words and variables it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skeleton {
    hash: u64,
    words: u32,
    variables: u32,
}

impl Skeleton {
    /// The skeleton of a token in masked form (`uid=<*>`, `<*>]`).
    pub(crate) fn of(text: &str) -> Skeleton {
        let bytes = text.as_bytes();
        let mut hasher = ShapeHasher::new();
        let (mut words, mut variables) = (0u32, 0u32);
        let mut position = 0usize;
        while let Some(part) = next_part(bytes, &mut position) {
            match part {
                Part::Word(word) => {
                    words += 1;
                    hasher.write_bytes(word);
                    hasher.write_u64(0x3000);
                }
                Part::Variable => variables += 1,
                Part::Delimiter(delimiter) => hasher.write_u64(u64::from(delimiter) | 0x100),
            }
        }
        Skeleton {
            hash: hasher.finish(),
            words,
            variables,
        }
    }

    /// Whether two tokens differ only in their variable-looking parts (numbers, identifiers
    /// with dots or slashes, maybe empty): `www.example.org:<*>` and `<*>:<*>` do, so do `()`
    /// and `(<*>)`, and a value that is all variable against one that holds a variable
    /// (`<*>,` and `LOCAL(<*>),`); `user=root` and `user=admin` do not, nor do `(uid=<*>)`
    /// and `LOGIN(uid=<*>)`, nor `HTTPS` and `<*>`.
    pub(crate) fn matches(&self, other: &Skeleton) -> bool {
        if self.hash == other.hash && self.words == other.words {
            return true;
        }
        let both_hold_variables = self.variables > 0 && other.variables > 0;
        both_hold_variables && (self.words == 0 || other.words == 0)
    }
}

/// [`Skeleton::matches`] on two masked tokens.
#[cfg(test)]
fn same_skeleton(left: &str, right: &str) -> bool {
    Skeleton::of(left).matches(&Skeleton::of(right))
}

/// The masked form of a token: `uid=0` gives `uid=<*>`, `42` gives `<*>`.
pub(crate) fn masked_text(token: &str) -> String {
    let bytes = token.as_bytes();
    let mut text = String::with_capacity(token.len());
    let mut start = 0usize;
    for index in 0..=bytes.len() {
        let at_end = index == bytes.len();
        if at_end || is_delimiter(bytes[index]) {
            // Delimiters are ASCII, so `start` and `index` fall on character boundaries.
            let segment = &token[start..index];
            if !segment.is_empty() {
                if segment_is_variable(segment.as_bytes()) {
                    text.push_str(WILDCARD);
                } else {
                    text.push_str(segment);
                }
            }
            if !at_end {
                text.push(char::from(bytes[index]));
            }
            start = index + 1;
        }
    }
    text
}

/// The kind of a token already in masked form (`uid=<*>`, `<*>]`), as stored in a template.
pub(crate) fn kind_of_masked(text: &str) -> TokenKind {
    let unmasked = text.replace(WILDCARD, "0");
    hash_masked(unmasked.as_bytes(), &mut ShapeHasher::new())
}

/// Splits a message into whitespace-separated tokens as byte ranges, into `out`.
#[inline]
pub(crate) fn tokenize(message: &str, limit: usize, out: &mut Vec<(u32, u32)>) {
    out.clear();
    let bytes = message.as_bytes();
    let mut index = 0usize;
    while index < bytes.len() {
        while index < bytes.len() && bytes[index].is_ascii_whitespace() {
            index += 1;
        }
        if index >= bytes.len() {
            break;
        }
        let start = index;
        while index < bytes.len() && !bytes[index].is_ascii_whitespace() {
            index += 1;
        }
        if out.len() + 1 == limit {
            // The last token takes the rest of the message; it is masked like any other.
            out.push((start as u32, bytes.len() as u32));
            return;
        }
        out.push((start as u32, index as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(token: &str) -> TokenKind {
        hash_masked(token.as_bytes(), &mut ShapeHasher::new())
    }

    fn hash(token: &str) -> u64 {
        let mut hasher = ShapeHasher::new();
        hash_masked(token.as_bytes(), &mut hasher);
        hasher.finish()
    }

    #[test]
    fn masks_segments_with_digits() {
        assert_eq!(masked_text("uid=0"), "uid=<*>");
        assert_eq!(masked_text("10.251.73.220:50010"), "<*>:<*>");
        assert_eq!(masked_text("[173.234.31.186]"), "[<*>]");
        assert_eq!(masked_text("blk_-6952295868487656571"), "<*>");
        assert_eq!(masked_text("failure;"), "failure;");
        assert_eq!(
            masked_text("IOThunderboltSwitch<0>(0x0)::x"),
            "IOThunderboltSwitch<<*>>(<*>)::x"
        );
    }

    #[test]
    fn same_masked_text_same_hash() {
        assert_eq!(hash("uid=0"), hash("uid=42"));
        assert_ne!(hash("uid=0"), hash("gid=0"));
        assert_ne!(hash("a:b"), hash("a;b"));
        assert_eq!(hash("10.0.0.1"), hash("7"));
    }

    #[test]
    fn skeletons() {
        assert!(same_skeleton("www.example.org:<*>", "<*>:<*>"));
        assert!(same_skeleton("/var/log/a", "/usr/lib/b.so"));
        assert!(!same_skeleton("user=root", "user=admin"));
        assert!(!same_skeleton("(uid=<*>)", "LOGIN(uid=<*>)"));
        assert!(!same_skeleton("HTTPS", "<*>"));
        assert!(same_skeleton("a.b", "<*>"));
        assert!(same_skeleton("()", "(<*>)"));
        assert!(same_skeleton("LOCAL(<*>),", "<*>,"));
        assert!(!same_skeleton("(<*>)", "(LOCAL)"));
    }

    #[test]
    fn calendar_words_are_variables() {
        assert_eq!(masked_text("Sat"), WILDCARD);
        assert_eq!(masked_text("July"), WILDCARD);
        assert_eq!(masked_text("may"), "may");
        assert_eq!(masked_text("Mayday"), "Mayday");
    }

    #[test]
    fn kinds() {
        assert_eq!(kind("1234"), TokenKind::Masked);
        assert_eq!(kind("[10.0.0.1]"), TokenKind::Masked);
        assert_eq!(kind("failure"), TokenKind::Word);
        assert_eq!(kind("pre-auth"), TokenKind::Word);
        assert_eq!(kind("failure;"), TokenKind::Word);
        assert_eq!(kind("uid=0"), TokenKind::Other);
        assert_eq!(kind("www.example.com"), TokenKind::Other);
    }

    #[test]
    fn tokens_are_whitespace_separated_and_limited() {
        let mut tokens = Vec::new();
        tokenize("  a bb\tccc  ", 10, &mut tokens);
        assert_eq!(tokens, vec![(2, 3), (4, 6), (7, 10)]);
        tokenize("a b c d", 3, &mut tokens);
        assert_eq!(tokens, vec![(0, 1), (2, 3), (4, 7)]);
    }
}
