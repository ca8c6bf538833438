//! The protocol buffers wire format, as far as the remote-write messages need it: a reader over
//! one message's bytes that borrows from the buffer, and the few writers the encoder uses.
//!
//! Every problem is reported with the message's name, the field (or its tag) and the byte
//! offset in the decompressed request.

use std::fmt;
use std::ops::Range;

pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LENGTH_DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Deepest nesting of (long deprecated) groups that an unknown field may carry.
const MAX_GROUP_DEPTH: u32 = 32;
/// A field number must fit in 29 bits.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Where in a message a problem sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The tag that starts a field, before its number is known.
    Tag,
    Field(u32),
}

impl fmt::Display for Place {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Tag => formatter.write_str("a field tag"),
            Place::Field(number) => write!(formatter, "field {number}"),
        }
    }
}

/// What is wrong with the bytes of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireProblem {
    Truncated,
    VarintTooLong,
    WireType { found: u8, expected: u8 },
    InvalidWireType(u8),
    InvalidFieldNumber(u64),
    UnmatchedGroupEnd,
    GroupsTooDeep,
    InvalidUtf8,
}

impl fmt::Display for WireProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireProblem::Truncated => formatter.write_str("truncated"),
            WireProblem::VarintTooLong => formatter.write_str("has a varint longer than 10 bytes"),
            WireProblem::WireType { found, expected } => {
                write!(
                    formatter,
                    "has wire type {found} where {expected} was expected"
                )
            }
            WireProblem::InvalidWireType(found) => {
                write!(formatter, "has invalid wire type {found}")
            }
            WireProblem::InvalidFieldNumber(number) => {
                write!(formatter, "has invalid field number {number}")
            }
            WireProblem::UnmatchedGroupEnd => formatter.write_str("ends a group it did not start"),
            WireProblem::GroupsTooDeep => {
                write!(formatter, "nests groups deeper than {MAX_GROUP_DEPTH}")
            }
            WireProblem::InvalidUtf8 => formatter.write_str("is not valid utf-8"),
        }
    }
}

/// A problem with its place: the reader's error, turned into the crate's error by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    pub message: &'static str,
    pub place: Place,
    pub problem: WireProblem,
    pub offset: usize,
}

/// The tag of one field: its number, wire type and the offset of the tag's first byte.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tag {
    pub number: u32,
    pub wire_type: u8,
    pub offset: usize,
}

/// Reads the fields of one message, `buffer[range]`, in order.
pub(super) struct MessageReader<'a> {
    buffer: &'a [u8],
    position: usize,
    end: usize,
    message: &'static str,
}

impl<'a> MessageReader<'a> {
    pub fn new(buffer: &'a [u8], range: Range<usize>, message: &'static str) -> Self {
        MessageReader {
            buffer,
            position: range.start,
            end: range.end.min(buffer.len()),
            message,
        }
    }

    pub fn has_more(&self) -> bool {
        self.position < self.end
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn error(&self, place: Place, problem: WireProblem, offset: usize) -> WireError {
        WireError {
            message: self.message,
            place,
            problem,
            offset,
        }
    }

    fn field_error(&self, tag: Tag, problem: WireProblem, offset: usize) -> WireError {
        self.error(Place::Field(tag.number), problem, offset)
    }

    /// The next field's tag. An end-group tag here has no matching start.
    #[inline]
    pub fn tag(&mut self) -> Result<Tag, WireError> {
        let tag = self.any_tag()?;
        if tag.wire_type == END_GROUP {
            return Err(self.field_error(tag, WireProblem::UnmatchedGroupEnd, tag.offset));
        }
        Ok(tag)
    }

    /// The next field's tag, an end-group tag included.
    #[inline]
    fn any_tag(&mut self) -> Result<Tag, WireError> {
        let offset = self.position;
        let raw = self
            .raw_varint()
            .map_err(|problem| self.error(Place::Tag, problem, offset))?;
        let number = raw >> 3;
        let wire_type = (raw & 7) as u8;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(self.error(Place::Tag, WireProblem::InvalidFieldNumber(number), offset));
        }
        let tag = Tag {
            number: number as u32,
            wire_type,
            offset,
        };
        if wire_type > FIXED32 {
            return Err(self.field_error(tag, WireProblem::InvalidWireType(wire_type), offset));
        }
        Ok(tag)
    }

    fn expect(&self, tag: Tag, expected: u8) -> Result<(), WireError> {
        if tag.wire_type == expected {
            return Ok(());
        }
        Err(self.field_error(
            tag,
            WireProblem::WireType {
                found: tag.wire_type,
                expected,
            },
            tag.offset,
        ))
    }

    /// A length-delimited field's payload, as a range of the buffer.
    #[inline]
    pub fn length_delimited(&mut self, tag: Tag) -> Result<Range<usize>, WireError> {
        self.expect(tag, LENGTH_DELIMITED)?;
        let length_offset = self.position;
        let length = self
            .raw_varint()
            .map_err(|problem| self.field_error(tag, problem, length_offset))?;
        let start = self.position;
        let left = (self.end - start) as u64;
        if length > left {
            return Err(self.field_error(tag, WireProblem::Truncated, length_offset));
        }
        self.position = start + length as usize;
        Ok(start..self.position)
    }

    /// A length-delimited field that must hold UTF-8 text.
    pub fn string(&mut self, tag: Tag) -> Result<&'a str, WireError> {
        let range = self.length_delimited(tag)?;
        let start = range.start;
        let buffer: &'a [u8] = self.buffer;
        std::str::from_utf8(&buffer[range])
            .map_err(|_| self.field_error(tag, WireProblem::InvalidUtf8, start))
    }

    #[inline]
    pub fn fixed64(&mut self, tag: Tag) -> Result<u64, WireError> {
        self.expect(tag, FIXED64)?;
        let start = self.position;
        if self.end - start < 8 {
            return Err(self.field_error(tag, WireProblem::Truncated, start));
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.buffer[start..start + 8]);
        self.position = start + 8;
        Ok(u64::from_le_bytes(word))
    }

    #[inline]
    pub fn varint(&mut self, tag: Tag) -> Result<u64, WireError> {
        self.expect(tag, VARINT)?;
        let start = self.position;
        self.raw_varint()
            .map_err(|problem| self.field_error(tag, problem, start))
    }

    /// Passes over a field this decoder does not read, whatever its wire type.
    pub fn skip(&mut self, tag: Tag) -> Result<(), WireError> {
        self.skip_at_depth(tag, 0)
    }

    fn skip_at_depth(&mut self, tag: Tag, depth: u32) -> Result<(), WireError> {
        match tag.wire_type {
            VARINT => self.varint(tag).map(drop),
            FIXED64 => self.fixed64(tag).map(drop),
            LENGTH_DELIMITED => self.length_delimited(tag).map(drop),
            FIXED32 => {
                let start = self.position;
                if self.end - start < 4 {
                    return Err(self.field_error(tag, WireProblem::Truncated, start));
                }
                self.position = start + 4;
                Ok(())
            }
            START_GROUP => self.skip_group(tag, depth + 1),
            other => Err(self.field_error(tag, WireProblem::InvalidWireType(other), tag.offset)),
        }
    }

    /// Passes over a group's fields up to the end-group tag with the same number.
    fn skip_group(&mut self, start: Tag, depth: u32) -> Result<(), WireError> {
        if depth > MAX_GROUP_DEPTH {
            return Err(self.field_error(start, WireProblem::GroupsTooDeep, start.offset));
        }
        loop {
            if !self.has_more() {
                return Err(self.field_error(start, WireProblem::Truncated, self.position));
            }
            let inner = self.any_tag()?;
            if inner.wire_type == END_GROUP {
                if inner.number == start.number {
                    return Ok(());
                }
                return Err(self.field_error(inner, WireProblem::UnmatchedGroupEnd, inner.offset));
            }
            self.skip_at_depth(inner, depth)?;
        }
    }

    #[inline]
    fn raw_varint(&mut self) -> Result<u64, WireProblem> {
        let bytes = &self.buffer[self.position..self.end];
        let Some(&first) = bytes.first() else {
            return Err(WireProblem::Truncated);
        };
        if first < 0x80 {
            self.position += 1;
            return Ok(u64::from(first));
        }
        let mut value = 0u64;
        for (index, &byte) in bytes.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                self.position += index + 1;
                return Ok(value);
            }
        }
        if bytes.len() < 10 {
            return Err(WireProblem::Truncated);
        }
        Err(WireProblem::VarintTooLong)
    }
}

/// A varint that takes exactly these bytes, or `None`.
#[inline]
pub(super) fn whole_varint(bytes: &[u8]) -> Option<u64> {
    let (&last, body) = bytes.split_last()?;
    if last >= 0x80 || body.len() >= 10 || body.iter().any(|byte| *byte < 0x80) {
        return None;
    }
    let mut value = 0u64;
    for (index, &byte) in body.iter().enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
    }
    Some(value | (u64::from(last) << (7 * body.len())))
}

pub(super) fn put_varint(out: &mut Vec<u8>, value: u64) {
    let mut rest = value;
    while rest >= 0x80 {
        out.push((rest as u8) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

pub(super) fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

pub(super) fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_tag(out, number, LENGTH_DELIMITED);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags_of(bytes: &[u8]) -> Result<Vec<(u32, u8)>, WireError> {
        let mut reader = MessageReader::new(bytes, 0..bytes.len(), "Test");
        let mut seen = Vec::new();
        while reader.has_more() {
            let tag = reader.tag()?;
            seen.push((tag.number, tag.wire_type));
            reader.skip(tag)?;
        }
        Ok(seen)
    }

    #[test]
    fn every_wire_type_is_skipped() {
        let mut bytes = Vec::new();
        put_tag(&mut bytes, 1, VARINT);
        put_varint(&mut bytes, u64::MAX);
        put_tag(&mut bytes, 2, FIXED64);
        bytes.extend_from_slice(&[0; 8]);
        put_bytes(&mut bytes, 3, b"abc");
        put_tag(&mut bytes, 4, START_GROUP);
        put_tag(&mut bytes, 9, START_GROUP);
        put_tag(&mut bytes, 1, FIXED32);
        bytes.extend_from_slice(&[0; 4]);
        put_tag(&mut bytes, 9, END_GROUP);
        put_tag(&mut bytes, 4, END_GROUP);
        put_tag(&mut bytes, 5, FIXED32);
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        let seen = tags_of(&bytes).expect("well formed");
        assert_eq!(seen, vec![(1, 0), (2, 1), (3, 2), (4, 3), (5, 5)]);
    }

    #[test]
    fn bad_groups_and_wire_types_are_refused() {
        let mut unmatched = Vec::new();
        put_tag(&mut unmatched, 4, START_GROUP);
        put_tag(&mut unmatched, 5, END_GROUP);
        let error = tags_of(&unmatched).expect_err("mismatched group end");
        assert_eq!(error.problem, WireProblem::UnmatchedGroupEnd);

        let mut open = Vec::new();
        put_tag(&mut open, 4, START_GROUP);
        assert_eq!(
            tags_of(&open).expect_err("open").problem,
            WireProblem::Truncated
        );

        let mut deep = Vec::new();
        for _ in 0..100 {
            put_tag(&mut deep, 4, START_GROUP);
        }
        assert_eq!(
            tags_of(&deep).expect_err("deep").problem,
            WireProblem::GroupsTooDeep
        );

        let invalid = [(1 << 3) | 6];
        assert_eq!(
            tags_of(&invalid).expect_err("type 6").problem,
            WireProblem::InvalidWireType(6)
        );
        assert_eq!(
            tags_of(&[0x02]).expect_err("field 0").problem,
            WireProblem::InvalidFieldNumber(0)
        );
        let long = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(
            tags_of(&long).expect_err("long").problem,
            WireProblem::VarintTooLong
        );
    }

    #[test]
    fn whole_varints_take_all_their_bytes() {
        for value in [0, 1, 127, 128, 1_700_000_000_000, u64::MAX] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            assert_eq!(whole_varint(&bytes), Some(value));
            bytes.push(0);
            assert_eq!(whole_varint(&bytes), None);
        }
        assert_eq!(whole_varint(&[]), None);
        assert_eq!(whole_varint(&[0x80]), None);
    }

    #[test]
    fn lengths_past_the_message_are_truncation() {
        let mut bytes = Vec::new();
        put_tag(&mut bytes, 1, LENGTH_DELIMITED);
        put_varint(&mut bytes, 5);
        bytes.extend_from_slice(b"abc");
        let error = tags_of(&bytes).expect_err("short");
        assert_eq!(error.problem, WireProblem::Truncated);
        assert_eq!(error.place, Place::Field(1));
        assert_eq!(error.offset, 1);
    }
}
