//! Turning bytes into text: binary detection, byte-order marks, UTF-8, and legacy encodings.
//!
//! Order matters: a byte-order mark decides first (UTF-8 or UTF-16), then valid UTF-8 is taken
//! as it is, and anything else is handed to `chardetng`, which guesses the legacy single-byte or
//! multi-byte encoding from the bytes. Invalid sequences become U+FFFD; nothing panics.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE};

use crate::error::{Error, Result};

/// How much of the start of a file the binary checks look at.
const SNIFF_BYTES: usize = 8192;

/// Refuses content whose first bytes identify a binary format, whatever the file is called.
pub(super) fn refuse_known_binary(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"%PDF-", "PDF files are not supported yet"),
        (b"PK\x03\x04", "zip archive (DOCX, ODT and EPUB files are read when named so)"),
        (b"\x89PNG", "image"),
        (b"\xff\xd8\xff", "image"),
        (b"GIF8", "image"),
        (b"\x7fELF", "executable or binary"),
        (b"\x1f\x8b", "archive"),
        (b"SQLite format 3\0", "database file"),
        (b"\xd0\xcf\x11\xe0", "word-processor documents are not supported yet"),
    ];
    match MAGIC.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        Some((_, kind)) => Err(Error::unsupported(*kind)),
        None => Ok(()),
    }
}

/// Decodes a file's bytes into text, or refuses them as binary. `declared` is an encoding
/// label the content came with (an HTTP `charset`); a byte-order mark still wins over it.
pub(super) fn decode(bytes: &[u8], declared: Option<&str>) -> Result<String> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let body = &bytes[bom_len..];
        if encoding != UTF_16LE && encoding != UTF_16BE {
            refuse_binary(body)?;
        }
        let (text, _) = encoding.decode_without_bom_handling(body);
        return Ok(text.into_owned());
    }
    refuse_binary(bytes)?;
    if let Some(encoding) = declared.and_then(|label| Encoding::for_label(label.as_bytes())) {
        return Ok(encoding.decode_without_bom_handling(bytes).0.into_owned());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(_) => {
            let mut detector = chardetng::EncodingDetector::new();
            detector.feed(bytes, true);
            let encoding = detector.guess(None, true);
            let (text, _) = encoding.decode_without_bom_handling(bytes);
            Ok(text.into_owned())
        }
    }
}

/// Text has no NUL bytes and few control characters; anything else is binary.
fn refuse_binary(bytes: &[u8]) -> Result<()> {
    let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
    if head.contains(&0) {
        return Err(Error::unsupported("binary content"));
    }
    let controls = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b))
        .count();
    if controls * 100 > head.len().max(1) * 2 {
        return Err(Error::unsupported("binary content"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom() {
        assert_eq!(decode("héllo".as_bytes(), None).unwrap(), "héllo");
        assert_eq!(decode(b"\xef\xbb\xbfhi", None).unwrap(), "hi");
    }

    #[test]
    fn utf16_with_bom() {
        let mut le = vec![0xff, 0xfe];
        le.extend("añb".encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(decode(&le, None).unwrap(), "añb");
        let mut be = vec![0xfe, 0xff];
        be.extend("añb".encode_utf16().flat_map(|u| u.to_be_bytes()));
        assert_eq!(decode(&be, None).unwrap(), "añb");
        // An odd trailing byte is replaced, not a panic.
        le.push(0x41);
        assert!(decode(&le, None).unwrap().starts_with("añb"));
    }

    #[test]
    fn legacy_single_byte_text_is_detected() {
        let latin1 =
            b"Le caf\xe9 est tr\xe8s bon, et la cr\xe8me br\xfbl\xe9e aussi. D\xe9j\xe0 vu.";
        let text = decode(latin1, None).unwrap();
        assert!(text.contains("café") && text.contains("crème brûlée"), "{text}");
        let (cyrillic, _, _) = encoding_rs::WINDOWS_1251
            .encode("Привет, как дела? Это проверка текста на русском языке.");
        assert!(decode(&cyrillic, None).unwrap().contains("Привет"));
        assert_eq!(decode(b"caf\xe9", Some("iso-8859-1")).unwrap(), "café");
    }

    #[test]
    fn binary_is_refused() {
        assert_eq!(
            decode(&[0u8; 4096], None).unwrap_err().to_string(),
            "unsupported format: binary content"
        );
        let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert_eq!(decode(&noise, None).unwrap_err().code(), "unsupported_format");
        assert_eq!(refuse_known_binary(b"%PDF-1.7 ...").unwrap_err().code(), "unsupported_format");
    }
}
