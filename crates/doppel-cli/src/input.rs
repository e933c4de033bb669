//! Standard input, read within limits: nothing piped in (`< /dev/zero`, say) is read past the
//! limit of what it is for, so memory stays bounded whatever arrives.

use std::io::{self, BufRead, Read};

use doppel_core::Error;

/// The longest API key, in bytes.
pub(crate) const KEY_BYTES: usize = 4096;

/// The longest question line, in bytes: the core takes 4,000 characters of up to 4 bytes.
pub(crate) const QUESTION_BYTES: usize = 16_000;

/// All of `reader`, refused once it holds more than `limit` bytes (one byte past the limit is
/// read to know, no more).
pub(crate) fn all(reader: impl Read, limit: u64) -> Result<String, Error> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::InvalidInput(format!("could not read standard input: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(Error::FileTooLarge { size: bytes.len() as u64, limit });
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::InvalidInput("standard input is not UTF-8 text".into()))
}

/// One line of `reader` without its line ending, `None` at the end of input; a line longer
/// than `limit` bytes is an error of kind `InvalidData`, and only `limit + 1` bytes of it are
/// read.
pub(crate) fn line(reader: &mut impl BufRead, limit: usize) -> io::Result<Option<String>> {
    let mut bytes = Vec::new();
    let read = reader.take(limit as u64 + 1).read_until(b'\n', &mut bytes)?;
    if read == 0 {
        return Ok(None);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a line is at most {limit} bytes"),
        ));
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the line is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_one_byte_past_the_limit() {
        let mut endless = io::repeat(b'a');
        assert_eq!(all(&mut endless, 10).unwrap_err().code(), "file_too_large");
        assert_eq!(all(&b"hello"[..], 5).unwrap(), "hello");
        let mut endless = io::BufReader::new(io::repeat(b'a'));
        assert_eq!(line(&mut endless, 10).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut lines = &b"first\r\nsecond\n"[..];
        assert_eq!(line(&mut lines, 6).unwrap().as_deref(), Some("first"));
        assert_eq!(line(&mut lines, 6).unwrap().as_deref(), Some("second"));
        assert_eq!(line(&mut lines, 6).unwrap(), None);
    }
}
