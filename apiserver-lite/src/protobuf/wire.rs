//! The protobuf wire format: a reader that splits a message's bytes into (field number,
//! value) pairs. It knows nothing of the schema; `decode` gives the values their meaning.

/// One value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub(crate) fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Bytes(_) => 2,
            WireValue::Fixed32(_) => 5,
        }
    }
}

/// What is wrong with the bytes, before the schema adds which message they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// A field key ended early (or had a zero field number).
    BadKey { offset: usize },
    /// The value of this field ends past the end of the message.
    Truncated { field: u32 },
    /// A varint of more than 10 bytes.
    VarintTooLong { field: u32 },
    /// Groups (3, 4) and the unassigned wire types 6 and 7.
    UnsupportedWireType { field: u32, wire_type: u8 },
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next field, or None at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key_offset = self.pos;
        let key = self
            .varint()
            .map_err(|_| WireError::BadKey { offset: key_offset })?;
        let field =
            u32::try_from(key >> 3).map_err(|_| WireError::BadKey { offset: key_offset })?;
        if field == 0 {
            return Err(WireError::BadKey { offset: key_offset });
        }
        let value = match (key & 7) as u8 {
            0 => WireValue::Varint(self.varint().map_err(|e| e.for_field(field))?),
            1 => WireValue::Fixed64(u64::from_le_bytes(
                self.take(8, field)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = self.varint().map_err(|e| e.for_field(field))?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated { field })?;
                WireValue::Bytes(self.take(len, field)?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(
                self.take(4, field)?.try_into().expect("4 bytes"),
            )),
            wire_type => return Err(WireError::UnsupportedWireType { field, wire_type }),
        };
        Ok(Some((field, value)))
    }

    fn take(&mut self, len: usize, field: u32) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len());
        let end = end.ok_or(WireError::Truncated { field })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// Reads a base-128 varint; the error's field number is filled in by the caller.
    fn varint(&mut self) -> Result<u64, VarintError> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(VarintError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(VarintError::TooLong)
    }
}

/// Decodes a packed run of varints (a `repeated int32` written packed).
pub(crate) fn packed_varints(bytes: &[u8], field: u32) -> Result<Vec<u64>, WireError> {
    let mut reader = Reader::new(bytes);
    let mut values = Vec::new();
    while reader.pos < bytes.len() {
        values.push(reader.varint().map_err(|e| e.for_field(field))?);
    }
    Ok(values)
}

enum VarintError {
    Truncated,
    TooLong,
}

impl VarintError {
    fn for_field(self, field: u32) -> WireError {
        match self {
            VarintError::Truncated => WireError::Truncated { field },
            VarintError::TooLong => WireError::VarintTooLong { field },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, WireError> {
        let mut reader = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some(field) = reader.next_field()? {
            out.push(field);
        }
        Ok(out)
    }

    #[test]
    fn reads_each_wire_type() {
        let bytes = [
            0x08, 0x96, 0x01, // field 1 varint 150
            0x12, 0x02, b'h', b'i', // field 2 bytes "hi"
            0x19, 1, 0, 0, 0, 0, 0, 0, 0, // field 3 fixed64 1
            0x25, 2, 0, 0, 0, // field 4 fixed32 2
        ];
        assert_eq!(
            fields(&bytes).unwrap(),
            vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Bytes(b"hi")),
                (3, WireValue::Fixed64(1)),
                (4, WireValue::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn negative_int32_is_a_ten_byte_varint() {
        let bytes = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(
            fields(&bytes).unwrap(),
            vec![(1, WireValue::Varint(u64::MAX))]
        );
    }

    #[test]
    fn truncation_names_the_field() {
        assert_eq!(
            fields(&[0x12, 0x05, b'a']),
            Err(WireError::Truncated { field: 2 })
        );
        assert_eq!(
            fields(&[0x08, 0x80]),
            Err(WireError::Truncated { field: 1 })
        );
        assert_eq!(
            fields(&[0x19, 1, 2]),
            Err(WireError::Truncated { field: 3 })
        );
        assert_eq!(
            fields(&[0x0a, 0x01, b'x', 0x80]),
            Err(WireError::BadKey { offset: 3 })
        );
    }

    #[test]
    fn rejects_groups_zero_field_and_overlong_varints() {
        assert_eq!(
            fields(&[0x0b]),
            Err(WireError::UnsupportedWireType {
                field: 1,
                wire_type: 3
            })
        );
        assert_eq!(fields(&[0x00, 0x01]), Err(WireError::BadKey { offset: 0 }));
        let overlong = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(
            fields(&overlong),
            Err(WireError::VarintTooLong { field: 1 })
        );
    }

    #[test]
    fn packed_varints_decode_and_detect_truncation() {
        assert_eq!(
            packed_varints(&[1, 0x96, 0x01, 3], 7).unwrap(),
            vec![1, 150, 3]
        );
        assert_eq!(
            packed_varints(&[1, 0x96], 7),
            Err(WireError::Truncated { field: 7 })
        );
    }
}
