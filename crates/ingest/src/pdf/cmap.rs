//! CMap streams: `ToUnicode` maps (code -> Unicode) and embedded encoding CMaps (code -> CID),
//! with their code space ranges, which say how many bytes each character code takes.
//!
//! Ranges are kept as ranges, never expanded, so a hostile `<00000000> <FFFFFFFF>` costs nothing.

use std::collections::HashMap;

/// A code space range: codes of `len` bytes between `lo` and `hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CodeSpace {
    pub lo: u32,
    pub hi: u32,
    pub len: u8,
}

#[derive(Debug, Clone)]
enum RangeTarget {
    /// Unicode of the first code; following codes increment the last UTF-16 unit.
    Base(Vec<u16>),
    /// One string per code.
    List(Vec<String>),
}

/// A parsed CMap. Lookups are by (code, code length in bytes).
#[derive(Debug, Clone, Default)]
pub(crate) struct CMap {
    pub code_space: Vec<CodeSpace>,
    unicode_chars: HashMap<(u32, u8), String>,
    unicode_ranges: Vec<(u32, u32, u8, RangeTarget)>,
    cid_chars: HashMap<(u32, u8), u32>,
    cid_ranges: Vec<(u32, u32, u8, u32)>,
    /// `/WMode 1`: vertical writing.
    pub vertical: bool,
}

impl CMap {
    pub fn has_unicode(&self) -> bool {
        !self.unicode_chars.is_empty() || !self.unicode_ranges.is_empty()
    }

    /// The Unicode text of a code, if the map has it.
    pub fn unicode(&self, code: u32, len: u8) -> Option<String> {
        if let Some(s) = self.unicode_chars.get(&(code, len)) {
            return Some(s.clone());
        }
        // Later definitions win, as in a PostScript CMap.
        for (lo, hi, range_len, target) in self.unicode_ranges.iter().rev() {
            if *range_len != len || code < *lo || code > *hi {
                continue;
            }
            let offset = code - lo;
            return match target {
                RangeTarget::Base(units) => {
                    let mut units = units.clone();
                    if let Some(last) = units.last_mut() {
                        *last = last.wrapping_add(offset as u16);
                    }
                    Some(String::from_utf16_lossy(&units))
                }
                RangeTarget::List(list) => list.get(offset as usize).cloned(),
            };
        }
        // Some producers write every code with the wrong length; try the unique other length.
        None
    }

    /// The CID of a code in an encoding CMap.
    pub fn cid(&self, code: u32, len: u8) -> Option<u32> {
        if let Some(cid) = self.cid_chars.get(&(code, len)) {
            return Some(*cid);
        }
        self.cid_ranges
            .iter()
            .rev()
            .find(|(lo, hi, l, _)| *l == len && code >= *lo && code <= *hi)
            .map(|(lo, _, _, base)| base.wrapping_add(code - lo))
    }

    /// Splits the next code off `bytes` by the code space ranges; `(code, length)`.
    /// Without ranges, `default_len` bytes are taken.
    pub fn next_code(&self, bytes: &[u8], default_len: u8) -> (u32, u8) {
        if !self.code_space.is_empty() {
            for len in 1..=4u8 {
                if bytes.len() < len as usize {
                    break;
                }
                let code = be_code(&bytes[..len as usize]);
                if self.code_space.iter().any(|cs| cs.len == len && code >= cs.lo && code <= cs.hi) {
                    return (code, len);
                }
            }
            // Not in any range: take the shortest length that has a range (as the spec's
            // "partial match" fallback approximately does).
            let len = self.code_space.iter().map(|cs| cs.len).min().unwrap_or(default_len).clamp(1, 4);
            let len = len.min(bytes.len() as u8).max(1);
            return (be_code(&bytes[..len as usize]), len);
        }
        let len = default_len.clamp(1, 4).min(bytes.len() as u8).max(1);
        (be_code(&bytes[..len as usize]), len)
    }
}

pub(crate) fn be_code(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Hex(Vec<u8>),
    Int(i64),
    Name(String),
    Keyword(String),
    ArrayStart,
    ArrayEnd,
    Other,
}

fn tokenize(data: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        match b {
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'<' if data.get(i + 1) == Some(&b'<') => {
                tokens.push(Token::Other);
                i += 2;
            }
            b'>' if data.get(i + 1) == Some(&b'>') => {
                tokens.push(Token::Other);
                i += 2;
            }
            b'<' => {
                i += 1;
                let mut digits = Vec::new();
                while i < data.len() && data[i] != b'>' {
                    if data[i].is_ascii_hexdigit() {
                        digits.push(data[i]);
                    }
                    i += 1;
                }
                i += 1;
                if digits.len() % 2 == 1 {
                    digits.push(b'0');
                }
                let bytes = digits.chunks(2).map(|pair| (hex_val(pair[0]) << 4) | hex_val(pair[1])).collect();
                tokens.push(Token::Hex(bytes));
            }
            b'(' => {
                // Literal strings appear only in the header (registry names); skip them.
                let mut depth = 0usize;
                while i < data.len() {
                    match data[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                tokens.push(Token::Other);
            }
            b'[' => {
                tokens.push(Token::ArrayStart);
                i += 1;
            }
            b']' => {
                tokens.push(Token::ArrayEnd);
                i += 1;
            }
            b'/' => {
                let start = i + 1;
                i += 1;
                while i < data.len() && is_regular(data[i]) {
                    i += 1;
                }
                tokens.push(Token::Name(String::from_utf8_lossy(&data[start..i]).into_owned()));
            }
            _ if b.is_ascii_whitespace() || b == 0 => i += 1,
            _ => {
                let start = i;
                while i < data.len() && is_regular(data[i]) {
                    i += 1;
                }
                if i == start {
                    i += 1;
                    tokens.push(Token::Other);
                    continue;
                }
                let word = String::from_utf8_lossy(&data[start..i]).into_owned();
                match word.parse::<i64>() {
                    Ok(n) => tokens.push(Token::Int(n)),
                    Err(_) => tokens.push(Token::Keyword(word)),
                }
            }
        }
    }
    tokens
}

fn is_regular(b: u8) -> bool {
    !(b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b) || b == 0)
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn utf16be(bytes: &[u8]) -> Vec<u16> {
    bytes.chunks(2).map(|c| if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { c[0] as u16 }).collect()
}

fn code_of(bytes: &[u8]) -> Option<(u32, u8)> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    Some((be_code(bytes), bytes.len() as u8))
}

/// Parses a CMap stream. Unknown constructs are skipped; the result has what could be read.
pub(crate) fn parse(data: &[u8]) -> CMap {
    /// Bounds work on hostile maps; real ones have at most tens of thousands of entries.
    const MAX_ENTRIES: usize = 200_000;
    let tokens = tokenize(data);
    let mut map = CMap::default();
    let mut i = 0;
    let mut entries = 0usize;
    while i < tokens.len() && entries < MAX_ENTRIES {
        match &tokens[i] {
            Token::Name(n) if n == "WMode" => {
                if let Some(Token::Int(1)) = tokens.get(i + 1) {
                    map.vertical = true;
                }
                i += 1;
            }
            Token::Keyword(k) if k == "begincodespacerange" => {
                i += 1;
                while let (Some(Token::Hex(lo)), Some(Token::Hex(hi))) = (tokens.get(i), tokens.get(i + 1)) {
                    if let (Some((lo_code, len)), Some((hi_code, _))) = (code_of(lo), code_of(hi)) {
                        map.code_space.push(CodeSpace { lo: lo_code, hi: hi_code, len });
                    }
                    i += 2;
                    entries += 1;
                }
            }
            Token::Keyword(k) if k == "beginbfchar" => {
                i += 1;
                while let (Some(Token::Hex(src)), Some(dst)) = (tokens.get(i), tokens.get(i + 1)) {
                    if let Some(key) = code_of(src) {
                        let text = match dst {
                            Token::Hex(d) => Some(String::from_utf16_lossy(&utf16be(d))),
                            Token::Name(name) => super::font::glyph_name_to_unicode(name),
                            _ => None,
                        };
                        if let Some(text) = text {
                            map.unicode_chars.insert(key, text);
                        }
                    }
                    i += 2;
                    entries += 1;
                }
            }
            Token::Keyword(k) if k == "beginbfrange" => {
                i += 1;
                while let (Some(Token::Hex(lo)), Some(Token::Hex(hi))) = (tokens.get(i), tokens.get(i + 1)) {
                    i += 2;
                    let range = code_of(lo).zip(code_of(hi));
                    match tokens.get(i) {
                        Some(Token::Hex(d)) => {
                            if let Some(((lo, len), (hi, _))) = range
                                && hi >= lo
                            {
                                map.unicode_ranges.push((lo, hi, len, RangeTarget::Base(utf16be(d))));
                            }
                            i += 1;
                        }
                        Some(Token::ArrayStart) => {
                            i += 1;
                            let mut list = Vec::new();
                            while let Some(Token::Hex(d)) = tokens.get(i) {
                                list.push(String::from_utf16_lossy(&utf16be(d)));
                                i += 1;
                            }
                            if let Some(Token::ArrayEnd) = tokens.get(i) {
                                i += 1;
                            }
                            if let Some(((lo, len), (hi, _))) = range
                                && hi >= lo
                            {
                                map.unicode_ranges.push((lo, hi, len, RangeTarget::List(list)));
                            }
                        }
                        _ => break,
                    }
                    entries += 1;
                }
            }
            Token::Keyword(k) if k == "begincidchar" => {
                i += 1;
                while let (Some(Token::Hex(src)), Some(Token::Int(cid))) = (tokens.get(i), tokens.get(i + 1)) {
                    if let Some(key) = code_of(src) {
                        map.cid_chars.insert(key, (*cid).clamp(0, u32::MAX as i64) as u32);
                    }
                    i += 2;
                    entries += 1;
                }
            }
            Token::Keyword(k) if k == "begincidrange" => {
                i += 1;
                while let (Some(Token::Hex(lo)), Some(Token::Hex(hi)), Some(Token::Int(cid))) =
                    (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
                {
                    if let (Some((lo, len)), Some((hi, _))) = (code_of(lo), code_of(hi))
                        && hi >= lo
                    {
                        map.cid_ranges.push((lo, hi, len, (*cid).clamp(0, u32::MAX as i64) as u32));
                    }
                    i += 3;
                    entries += 1;
                }
            }
            _ => i += 1,
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"/CIDInit /ProcSet findresource begin
12 dict begin begincmap /CMapName /Adobe-Identity-UCS def
1 begincodespacerange <0000> <FFFF> endcodespacerange
2 beginbfchar <0003> <0020> <0011> <00660069> endbfchar
2 beginbfrange <0024> <0026> <0041> <0030> <0031> [<3042> <3044>] endbfrange
1 begincidrange <20> <7e> 1 endcidrange
endcmap CMapName currentdict /CMap defineresource pop end end";

    #[test]
    fn parses_chars_ranges_and_code_space() {
        let map = parse(SAMPLE);
        assert_eq!(map.unicode(0x03, 2).as_deref(), Some(" "));
        assert_eq!(map.unicode(0x11, 2).as_deref(), Some("fi"));
        assert_eq!(map.unicode(0x25, 2).as_deref(), Some("B"));
        assert_eq!(map.unicode(0x31, 2).as_deref(), Some("い"));
        assert_eq!(map.unicode(0x27, 2), None);
        assert_eq!(map.next_code(&[0x00, 0x24, 0x99], 1), (0x24, 2));
        assert_eq!(map.cid(0x41, 1), Some(34));
    }

    #[test]
    fn hostile_ranges_are_not_expanded() {
        let map = parse(b"1 beginbfrange <00000000> <FFFFFFFF> <0041> endbfrange");
        assert_eq!(map.unicode(0x1, 4).as_deref(), Some("B"));
    }

    #[test]
    fn garbage_does_not_panic() {
        let _ = parse(b"<<<< ((( [ ] beginbfrange <01> endbfrange begincidrange <");
        let _ = parse(&[0xff; 64]);
    }
}
