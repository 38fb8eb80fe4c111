//! The byte encoding of record content: a fixed field order per record type, big-endian integers,
//! length-prefixed UTF-8 text, one-byte tags for options and one-byte counts for lists.
//!
//! Decoding is strict so that every record has exactly one encoding: an option tag other than 0 or 1,
//! a truncated field or invalid UTF-8 is [`RecordError::Malformed`]. Strictness matters because the
//! record id is the hash of the bytes: two encodings of one content would be two records.
//!
//! The reader never panics and never allocates more than the input it was given: every length is
//! checked against the bytes that remain before anything is copied.

use crate::error::RecordError;

/// Appends encoded fields to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::with_capacity(256) }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Text: a u16 byte length, then the UTF-8 bytes. Callers have checked the field limit, which is
    /// always far below `u16::MAX`; longer text is cut at the limit rather than wrapping the length.
    pub fn text(&mut self, v: &str) {
        let len = v.len().min(u16::MAX as usize);
        self.u16(len as u16);
        self.buf.extend_from_slice(&v.as_bytes()[..len]);
    }

    /// An option: 0x00 for none, 0x01 followed by the value.
    pub fn option<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
    }

    /// A list: a u8 count, then the items. Callers have checked the list limit (always below 256).
    pub fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        let n = items.len().min(u8::MAX as usize);
        self.u8(n as u8);
        for item in &items[..n] {
            f(self, item);
        }
    }
}

/// Reads encoded fields from a byte slice, strictly.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.remaining() < n {
            return Err(RecordError::malformed(self.pos, what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Text with a u16 length. The length is checked against `max` before the bytes are read, so an
    /// over-long field is reported as such rather than as a truncation.
    pub fn text(&mut self, field: &'static str, max: usize) -> Result<String, RecordError> {
        let at = self.pos;
        let len = self.u16(field)? as usize;
        if len > max {
            return Err(RecordError::FieldTooLong { field, len, max });
        }
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(RecordError::malformed(at, "text is not valid UTF-8")),
        }
    }

    pub fn option<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Option<T>, RecordError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(RecordError::malformed(at, "option tag is neither 0 nor 1")),
        }
    }

    pub fn list<T>(
        &mut self,
        field: &'static str,
        max: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let n = self.u8(field)? as usize;
        if n > max {
            return Err(RecordError::TooManyItems { field, len: n, max });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }

    /// The content must end exactly where the reader is.
    pub fn finish(&self) -> Result<(), RecordError> {
        if self.remaining() != 0 {
            return Err(RecordError::malformed(self.pos, "trailing bytes after the content"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_primitives() {
        let mut w = Writer::new();
        w.u8(7);
        w.u16(0x1234);
        w.u32(0xdead_beef);
        w.u64(1 << 40);
        w.text("héllo");
        w.option(&Some(5u16), |w, v| w.u16(*v));
        w.option::<u16>(&None, |w, v| w.u16(*v));
        w.list(&[1u8, 2, 3], |w, v| w.u8(*v));
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x1234);
        assert_eq!(r.u32("c").unwrap(), 0xdead_beef);
        assert_eq!(r.u64("d").unwrap(), 1 << 40);
        assert_eq!(r.text("e", 10).unwrap(), "héllo");
        assert_eq!(r.option("f", |r| r.u16("f")).unwrap(), Some(5));
        assert_eq!(r.option("g", |r| r.u16("g")).unwrap(), None);
        assert_eq!(r.list("h", 3, |r| r.u8("h")).unwrap(), vec![1, 2, 3]);
        r.finish().unwrap();
    }

    #[test]
    fn strictness() {
        assert_eq!(Reader::new(&[2]).option("o", |r| r.u8("x")).unwrap_err().code(), "malformed");
        assert_eq!(Reader::new(&[0, 5, b'a']).text("t", 10).unwrap_err().code(), "malformed");
        assert_eq!(Reader::new(&[0, 11]).text("t", 10).unwrap_err().code(), "field_too_long");
        assert_eq!(Reader::new(&[0, 2, 0xff, 0xfe]).text("t", 10).unwrap_err().code(), "malformed");
        assert_eq!(Reader::new(&[4]).list("l", 3, |r| r.u8("x")).unwrap_err().code(), "too_many_items");
        let r = Reader::new(&[1]);
        assert_eq!(r.finish().unwrap_err().code(), "malformed");
    }
}
