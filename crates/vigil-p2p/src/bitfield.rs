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
        todo!("bitfield of {pieces} pieces")
    }
    pub fn set(&mut self, index: u32) {
        todo!("set {index}")
    }
    pub fn has(&self, index: u32) -> bool {
        todo!("has {index}")
    }
    pub fn count(&self) -> u32 {
        todo!()
    }
    pub fn len(&self) -> u32 {
        self.pieces
    }
    pub fn is_empty(&self) -> bool {
        self.pieces == 0
    }
    pub fn to_hex(&self) -> String {
        todo!("{:?}", self.bytes)
    }
    /// None when `text` is not the hex of exactly `pieces` bits (spare bits zero).
    pub fn from_hex(text: &str, pieces: u32) -> Option<Bitfield> {
        todo!("{text} {pieces}")
    }
}
