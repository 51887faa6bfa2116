//! Decoding text input: UTF-8 (with or without BOM), UTF-16 with BOM, or the legacy encoding
//! chardetng guesses (Shift_JIS/CP932, EUC-JP, GBK, Big5, EUC-KR, windows-125x...).

use encoding_rs::Encoding;

/// Text decoded from bytes, with the encoding it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoded {
    pub text: String,
    /// The encoding's WHATWG name, e.g. "UTF-8", "Shift_JIS".
    pub encoding: &'static str,
}

/// Whether the bytes look like binary data rather than text: NUL bytes (outside UTF-16) or
/// more than 1% C0 control characters other than tab, newline, carriage return, form feed and
/// escape.
pub(crate) fn looks_binary(bytes: &[u8]) -> bool {
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    if sample.contains(&0) {
        return true;
    }
    let controls = sample.iter().filter(|b| **b < 0x20 && !matches!(**b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)).count();
    controls * 100 > sample.len()
}

/// Decodes text; `None` when the bytes are not text in any encoding we accept.
pub(crate) fn decode(bytes: &[u8]) -> Option<Decoded> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let body = &bytes[bom_len..];
        let text = encoding.decode_without_bom_handling_and_without_replacement(body)?.into_owned();
        if text.chars().any(|c| c == '\0') {
            return None;
        }
        return Some(Decoded { text, encoding: encoding.name() });
    }
    if looks_binary(bytes) {
        return None;
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        // ISO-2022-JP (old Japanese mail) is 7-bit and so valid UTF-8: spot its escapes.
        if (text.contains("\x1b$B") || text.contains("\x1b$@"))
            && let Some(decoded) = encoding_rs::ISO_2022_JP.decode_without_bom_handling_and_without_replacement(bytes)
        {
            return Some(Decoded { text: decoded.into_owned(), encoding: encoding_rs::ISO_2022_JP.name() });
        }
        return Some(Decoded { text: text.to_string(), encoding: encoding_rs::UTF_8.name() });
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let encoding = detector.guess(None, chardetng::Utf8Detection::Deny);
    let text = encoding.decode_without_bom_handling_and_without_replacement(bytes)?.into_owned();
    Some(Decoded { text, encoding: encoding.name() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom() {
        let d = decode("\u{feff}名前,数量\n".as_bytes()).unwrap();
        assert_eq!(d.text, "名前,数量\n");
        assert_eq!(d.encoding, "UTF-8");
        assert_eq!(decode(b"plain").unwrap().text, "plain");
    }

    #[test]
    fn utf16_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "売上,金額".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let d = decode(&bytes).unwrap();
        assert_eq!(d.text, "売上,金額");
        assert_eq!(d.encoding, "UTF-16LE");
    }

    #[test]
    fn shift_jis_is_guessed() {
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode("請求先,金額,備考\n株式会社山田商事,1000,前払い済 ①\n");
        let d = decode(&bytes).unwrap();
        assert_eq!(d.encoding, "Shift_JIS");
        assert!(d.text.contains("株式会社山田商事"));
        assert!(d.text.contains("前払い済 ①"));
    }

    #[test]
    fn iso_2022_jp() {
        let (bytes, _, _) = encoding_rs::ISO_2022_JP.encode("見積書の件");
        let d = decode(&bytes).unwrap();
        assert_eq!(d.text, "見積書の件");
        assert_eq!(d.encoding, "ISO-2022-JP");
    }

    #[test]
    fn binary_is_refused() {
        assert!(decode(&[0x00, 0x01, 0x02, 0xFF, 0x10, 0x00]).is_none());
        assert!(looks_binary(&[1, 2, 3, 4, 5, 6, b'a']));
        assert!(!looks_binary(b"a\tb\r\n\x0cpage two"));
    }
}
