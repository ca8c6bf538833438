//! Which pieces a peer holds, as the tracker and the peers exchange it (lowercase hex, piece 0
//! the highest bit of the first byte).

/// A fixed-length set of piece indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    pieces: u32,
    bytes: Vec<u8>,
}

impl Bitfield {
    pub fn new(pieces: u32) -> Bitfield {
        Bitfield {
            pieces,
            bytes: vec![0; byte_len(pieces)],
        }
    }

    /// Every piece held.
    pub fn full(pieces: u32) -> Bitfield {
        let mut field = Bitfield::new(pieces);
        for index in 0..pieces {
            field.set(index);
        }
        field
    }

    /// Does nothing past the end.
    pub fn set(&mut self, index: u32) {
        if index >= self.pieces {
            return;
        }
        let (byte, mask) = position(index);
        self.bytes[byte] |= mask;
    }

    /// Does nothing past the end.
    pub fn clear(&mut self, index: u32) {
        if index >= self.pieces {
            return;
        }
        let (byte, mask) = position(index);
        self.bytes[byte] &= !mask;
    }

    pub fn has(&self, index: u32) -> bool {
        if index >= self.pieces {
            return false;
        }
        let (byte, mask) = position(index);
        self.bytes[byte] & mask != 0
    }

    pub fn count(&self) -> u32 {
        self.bytes.iter().map(|byte| byte.count_ones()).sum()
    }

    pub fn len(&self) -> u32 {
        self.pieces
    }

    pub fn is_empty(&self) -> bool {
        self.pieces == 0
    }

    pub fn is_complete(&self) -> bool {
        self.count() == self.pieces
    }

    /// How many pieces this holds that `other` lacks (fields of other lengths: none).
    pub fn count_lacking_in(&self, other: &Bitfield) -> u32 {
        if self.pieces != other.pieces {
            return 0;
        }
        self.bytes
            .iter()
            .zip(&other.bytes)
            .map(|(mine, theirs)| (mine & !theirs).count_ones())
            .sum()
    }

    /// The packed bits, as the peers' wire protocol carries them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// None when `bytes` is not exactly `pieces` bits (spare bits zero).
    pub fn from_bytes(bytes: &[u8], pieces: u32) -> Option<Bitfield> {
        if bytes.len() != byte_len(pieces) {
            return None;
        }
        let spare_bits = (8 - pieces % 8) % 8;
        if let Some(last) = bytes.last() {
            let spare_mask = (1u16 << spare_bits) - 1;
            if u16::from(*last) & spare_mask != 0 {
                return None;
            }
        }
        Some(Bitfield {
            pieces,
            bytes: bytes.to_vec(),
        })
    }

    pub fn to_hex(&self) -> String {
        vigil_core::text::hex(&self.bytes)
    }

    /// None when `text` is not the hex of exactly `pieces` bits (spare bits zero).
    pub fn from_hex(text: &str, pieces: u32) -> Option<Bitfield> {
        let bytes = decode_hex(text)?;
        Bitfield::from_bytes(&bytes, pieces)
    }
}

fn byte_len(pieces: u32) -> usize {
    usize::try_from(pieces.div_ceil(8)).unwrap_or(usize::MAX)
}

fn position(index: u32) -> (usize, u8) {
    let byte = usize::try_from(index / 8).unwrap_or(usize::MAX);
    let mask = 0x80u8 >> (index % 8);
    (byte, mask)
}

/// Lowercase hex only; None for anything else.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |byte: u8| match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_zero_is_the_highest_bit_of_the_first_byte() {
        let mut field = Bitfield::new(10);
        field.set(0);
        field.set(9);
        assert_eq!(field.to_hex(), "8040");
        assert!(field.has(0) && field.has(9) && !field.has(1));
        assert_eq!(field.count(), 2);
        field.set(10);
        assert_eq!(field.count(), 2);
        assert!(!field.has(10));
    }

    #[test]
    fn hex_reads_back_and_refuses_wrong_lengths_and_spare_bits() {
        let mut field = Bitfield::new(12);
        for index in [1, 4, 11] {
            field.set(index);
        }
        let text = field.to_hex();
        assert_eq!(Bitfield::from_hex(&text, 12), Some(field.clone()));
        assert_eq!(Bitfield::from_hex(&text, 17), None);
        assert_eq!(Bitfield::from_hex("fff0", 12).map(|f| f.count()), Some(12));
        assert_eq!(Bitfield::from_hex("fff8", 12), None, "a spare bit is set");
        assert_eq!(Bitfield::from_hex("FFF0", 12), None, "uppercase");
        assert_eq!(
            Bitfield::from_hex("ff", 8).map(|f| f.is_complete()),
            Some(true)
        );
        assert_eq!(Bitfield::from_hex("", 0), Some(Bitfield::new(0)));
        assert_eq!(Bitfield::from_hex("zz", 8), None);
    }

    #[test]
    fn clearing_takes_a_piece_back() {
        let mut field = Bitfield::full(9);
        assert!(field.is_complete());
        field.clear(8);
        assert!(!field.has(8));
        assert_eq!(field.to_hex(), "ff00");
        let mut other = Bitfield::new(9);
        other.set(0);
        other.set(8);
        assert_eq!(field.count_lacking_in(&other), 7);
        assert_eq!(other.count_lacking_in(&field), 1);
        assert_eq!(field.count_lacking_in(&Bitfield::new(3)), 0);
    }
}
