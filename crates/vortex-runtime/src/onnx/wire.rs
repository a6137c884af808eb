//! Protobuf's wire format, read without a schema: each call to [`Fields::next`] gives one
//! field (number, wire type, value) or a [`Malformed`] naming the byte where the data stops
//! making sense. Unknown fields are the caller's to skip: it simply ignores their numbers.
//! Nothing here panics on any input: every length is checked against what is left.

use std::fmt;

/// Where and why the bytes stopped being a protobuf message of the expected shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Byte offset in the file.
    pub offset: usize,
    /// What was wrong there.
    pub problem: Problem,
}

/// What was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The data ends inside a field.
    Truncated,
    /// A varint runs past 10 bytes or past 64 bits.
    VarintTooLong,
    /// A field number of 0 or above 2^29 - 1.
    BadFieldNumber,
    /// Wire type 3 or 4 (protobuf 2's groups, which ONNX never writes), or 6 or 7.
    BadWireType(u8),
    /// A field ONNX defines arrived with another wire type.
    WrongWireType(&'static str),
    /// A string field ONNX defines is not UTF-8.
    NotUtf8(&'static str),
    /// Subgraphs nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A ModelProto without a graph.
    NoGraph,
}

/// How deep subgraphs (If/Loop/Scan bodies) may nest before the reader refuses: ONNX models
/// nest a few levels; a file nesting thousands is an attack on the stack, not a model.
pub const MAX_DEPTH: usize = 32;

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Truncated => write!(f, "the data ends inside a field"),
            Problem::VarintTooLong => write!(f, "a varint runs past 64 bits"),
            Problem::BadFieldNumber => write!(f, "a field number outside 1..2^29"),
            Problem::BadWireType(t) => write!(f, "wire type {t}, which ONNX never writes"),
            Problem::WrongWireType(field) => write!(f, "{field} has the wrong wire type"),
            Problem::NotUtf8(field) => write!(f, "{field} is not UTF-8"),
            Problem::TooDeep => write!(f, "subgraphs nest deeper than {MAX_DEPTH} levels"),
            Problem::NoGraph => write!(f, "it has no graph"),
        }
    }
}

/// A field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: the bytes and their offset in the file.
    Bytes(&'a [u8], usize),
    /// Wire type 5.
    Fixed32(u32),
}

/// One field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Its number.
    pub number: u32,
    /// Its value.
    pub value: Value<'a>,
    /// Offset of its key in the file.
    pub offset: usize,
}

impl<'a> Field<'a> {
    fn wrong(&self, what: &'static str) -> Malformed {
        Malformed {
            offset: self.offset,
            problem: Problem::WrongWireType(what),
        }
    }

    /// A varint field's value.
    pub fn varint(&self, what: &'static str) -> Result<u64, Malformed> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.wrong(what)),
        }
    }

    /// An `int64` or `int32` field (two's complement in a varint).
    pub fn int(&self, what: &'static str) -> Result<i64, Malformed> {
        Ok(self.varint(what)? as i64)
    }

    /// A length-delimited field's bytes, as a reader of nested fields.
    pub fn message(&self, what: &'static str) -> Result<Fields<'a>, Malformed> {
        let (bytes, offset) = self.bytes(what)?;
        Ok(Fields::new(bytes, offset))
    }

    /// A length-delimited field's bytes and their offset in the file.
    pub fn bytes(&self, what: &'static str) -> Result<(&'a [u8], usize), Malformed> {
        match self.value {
            Value::Bytes(b, at) => Ok((b, at)),
            _ => Err(self.wrong(what)),
        }
    }

    /// A `string` field.
    pub fn string(&self, what: &'static str) -> Result<String, Malformed> {
        let (bytes, at) = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Malformed {
            offset: at,
            problem: Problem::NotUtf8(what),
        })
    }

    /// A `repeated int64` field, packed (one length-delimited run) or not (one varint):
    /// appends to `out`.
    pub fn ints(&self, what: &'static str, out: &mut Vec<i64>) -> Result<(), Malformed> {
        match self.value {
            Value::Varint(v) => out.push(v as i64),
            Value::Bytes(b, at) => {
                let mut pos = 0;
                while pos < b.len() {
                    out.push(read_varint(b, &mut pos, at)? as i64);
                }
            }
            _ => return Err(self.wrong(what)),
        }
        Ok(())
    }

    /// How many values a `repeated float` field holds, packed or not.
    pub fn float_count(&self, what: &'static str) -> Result<usize, Malformed> {
        match self.value {
            Value::Fixed32(_) => Ok(1),
            Value::Bytes(b, _) if b.len() % 4 == 0 => Ok(b.len() / 4),
            Value::Bytes(_, at) => Err(Malformed {
                offset: at,
                problem: Problem::Truncated,
            }),
            _ => Err(self.wrong(what)),
        }
    }
}

/// The fields of one message, in order.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Fields<'a> {
    /// The fields in `buf`, which starts at byte `base` of the file.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, pos: 0, base }
    }

    /// The next field, `None` at the end of the message.
    #[allow(clippy::should_implement_trait)] // fallible: an `Iterator` of `Result`s reads worse
    pub fn next(&mut self) -> Result<Option<Field<'a>>, Malformed> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let offset = self.base + self.pos;
        let key = read_varint(self.buf, &mut self.pos, self.base)?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(Malformed {
                offset,
                problem: Problem::BadFieldNumber,
            });
        }
        let number = number as u32;
        let value = match (key & 7) as u8 {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos, self.base)?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take::<8>()?)),
            2 => {
                let len_at = self.base + self.pos;
                let len = read_varint(self.buf, &mut self.pos, self.base)?;
                let left = (self.buf.len() - self.pos) as u64;
                if len > left {
                    return Err(Malformed {
                        offset: len_at,
                        problem: Problem::Truncated,
                    });
                }
                let start = self.pos;
                self.pos += len as usize;
                Value::Bytes(&self.buf[start..self.pos], self.base + start)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take::<4>()?)),
            other => {
                return Err(Malformed {
                    offset,
                    problem: Problem::BadWireType(other),
                });
            }
        };
        Ok(Some(Field {
            number,
            value,
            offset,
        }))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(Malformed {
                offset: self.base + self.pos,
                problem: Problem::Truncated,
            });
        };
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(out)
    }
}

/// A varint at `buf[*pos..]` (`base` = the offset of `buf` in the file, for errors).
fn read_varint(buf: &[u8], pos: &mut usize, base: usize) -> Result<u64, Malformed> {
    let start = *pos;
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&byte) = buf.get(*pos) else {
            return Err(Malformed {
                offset: base + start,
                problem: Problem::Truncated,
            });
        };
        *pos += 1;
        // The tenth byte carries one bit (bit 63); anything more does not fit.
        if i == 9 && byte > 1 {
            return Err(Malformed {
                offset: base + start,
                problem: Problem::VarintTooLong,
            });
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Malformed {
        offset: base + start,
        problem: Problem::VarintTooLong,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(bytes: &[u8]) -> Result<u64, Problem> {
        let mut pos = 0;
        read_varint(bytes, &mut pos, 0).map_err(|m| m.problem)
    }

    #[test]
    fn varints_decode_to_64_bits_and_no_further() {
        assert_eq!(varint(&[0]), Ok(0));
        assert_eq!(varint(&[0x96, 0x01]), Ok(150));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&max), Ok(u64::MAX));
        // -1 as int64 is ten bytes, as protobuf writes it.
        assert_eq!(varint(&max).map(|v| v as i64), Ok(-1));
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(varint(&too_big), Err(Problem::VarintTooLong));
        assert_eq!(varint(&[0x80; 11]), Err(Problem::VarintTooLong));
        assert_eq!(varint(&[0x80, 0x80]), Err(Problem::Truncated));
        assert_eq!(varint(&[]), Err(Problem::Truncated));
    }

    #[test]
    fn every_wire_type_is_read_and_bad_ones_are_refused() {
        // field 1 varint 7; field 2 fixed64; field 3 bytes "ab"; field 4 fixed32.
        let mut bytes = vec![0x08, 7, 0x11];
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(&[0x1a, 2, b'a', b'b', 0x25]);
        bytes.extend_from_slice(&9u32.to_le_bytes());
        let mut fields = Fields::new(&bytes, 100);
        let mut got = Vec::new();
        while let Some(f) = fields.next().expect("well formed") {
            got.push((f.number, f.value, f.offset));
        }
        assert_eq!(
            got,
            vec![
                (1, Value::Varint(7), 100),
                (2, Value::Fixed64(5), 102),
                (3, Value::Bytes(b"ab", 113), 111),
                (4, Value::Fixed32(9), 115),
            ]
        );
        for (bytes, problem) in [
            (&[0x0b][..], Problem::BadWireType(3)),
            (&[0x0c][..], Problem::BadWireType(4)),
            (&[0x0e][..], Problem::BadWireType(6)),
            (&[0x07][..], Problem::BadFieldNumber),
            (&[0x1a, 5, 1][..], Problem::Truncated),
            (&[0x11, 1, 2][..], Problem::Truncated),
            (&[0x25, 1][..], Problem::Truncated),
            (
                &[0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
                Problem::Truncated,
            ),
        ] {
            let err = Fields::new(bytes, 0).next().expect_err("malformed");
            assert_eq!(err.problem, problem, "{bytes:?}");
        }
    }

    #[test]
    fn repeated_ints_read_packed_and_unpacked() {
        // field 1 packed [3, 300, -1]; then field 1 unpacked 4.
        let mut bytes = vec![0x0a, 13, 3, 0xac, 0x02];
        bytes.extend_from_slice(&[0xff; 9]);
        bytes.push(0x01);
        bytes.extend_from_slice(&[0x08, 4]);
        let mut fields = Fields::new(&bytes, 0);
        let mut out = Vec::new();
        while let Some(f) = fields.next().expect("well formed") {
            f.ints("dims", &mut out).expect("ints");
        }
        assert_eq!(out, vec![3, 300, -1, 4]);
    }
}
