//! PDF fonts as far as text extraction needs them: how a string splits into character codes,
//! what Unicode text each code stands for, and how wide each glyph is.
//!
//! Unicode comes from, in order: the font's `ToUnicode` CMap; for composite (Type0) fonts, the
//! predefined CMap named by `/Encoding` when it is Unicode-based (`Uni*-UCS2-*`, `Uni*-UTF16-*`,
//! ...) or a legacy CJK encoding (`*-RKSJ-*`, `EUC-*`, GBK, Big5, UHC); for simple fonts, the
//! `/Encoding` (WinAnsi, MacRoman, Standard, `/Differences`) as lopdf resolves it.

use std::collections::HashMap;

use lopdf::{Dictionary, Document, Object};

use super::cmap::{self, CMap};

/// Bounds the bytes of a font's CMap or ToUnicode stream we decode.
const MAX_CMAP_BYTES: usize = 16 * 1024 * 1024;

/// One decoded character code.
#[derive(Debug, Clone)]
pub(crate) struct DecodedGlyph {
    /// Unicode text (empty when the code maps to nothing known).
    pub text: String,
    /// Horizontal advance (vertical for vertical fonts) in text space units per unit font size.
    pub width: f32,
    /// A single-byte code 32, to which word spacing (`Tw`) applies.
    pub is_space_code: bool,
}

#[derive(Debug)]
enum CodeEncoding {
    /// A simple font: one byte per code, Unicode from this table.
    Simple(Box<[Option<String>]>),
    /// `Identity-H/V`: two-byte codes equal to CIDs; Unicode only through ToUnicode.
    Identity,
    /// UCS-2 / UTF-16BE predefined CMaps: the codes are UTF-16 code units.
    Utf16,
    /// UTF-8 predefined CMaps.
    Utf8,
    /// UTF-32 predefined CMaps.
    Utf32,
    /// Legacy multi-byte CJK encodings, decoded by encoding_rs.
    Legacy(&'static encoding_rs::Encoding),
    /// An embedded CMap stream (code -> CID); Unicode only through ToUnicode.
    Embedded(CMap),
    /// A composite font whose encoding we do not know: two-byte codes.
    Unknown,
}

#[derive(Debug, Default)]
struct Widths {
    /// Simple fonts: `FirstChar` and `Widths`.
    first_char: u32,
    simple: Vec<f32>,
    /// Composite fonts: the `W` array.
    cid_single: HashMap<u32, f32>,
    cid_ranges: Vec<(u32, u32, f32)>,
    default: f32,
}

impl Widths {
    fn simple_width(&self, code: u32) -> f32 {
        code.checked_sub(self.first_char)
            .and_then(|i| self.simple.get(i as usize))
            .copied()
            .filter(|w| *w > 0.0)
            .unwrap_or(self.default)
    }

    fn cid_width(&self, cid: Option<u32>) -> f32 {
        let Some(cid) = cid else {
            return self.default;
        };
        if let Some(w) = self.cid_single.get(&cid) {
            return *w;
        }
        self.cid_ranges.iter().find(|(lo, hi, _)| cid >= *lo && cid <= *hi).map(|(_, _, w)| *w).unwrap_or(self.default)
    }
}

/// A font resource, ready to decode strings shown with it.
#[derive(Debug)]
pub(crate) struct Font {
    encoding: CodeEncoding,
    to_unicode: Option<CMap>,
    widths: Widths,
    /// Glyph space to text space (1/1000, or a Type3 font's `FontMatrix`).
    scale: f32,
    pub vertical: bool,
    /// For UCS-2 CMaps of the Adobe CJK collections, ASCII codes map to CIDs 1..=95.
    ascii_cids: bool,
}

fn number(obj: &Object) -> Option<f32> {
    match obj {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) => Some(*r),
        _ => None,
    }
}

fn deref<'a>(doc: &'a Document, obj: &'a Object) -> &'a Object {
    doc.dereference(obj).map(|(_, o)| o).unwrap_or(obj)
}

fn get<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    dict.get(key).ok().map(|o| deref(doc, o))
}

fn stream_cmap(doc: &Document, obj: &Object) -> Option<CMap> {
    let stream = deref(doc, obj).as_stream().ok()?;
    let data = stream
        .get_plain_content_with_limit(MAX_CMAP_BYTES)
        .ok()
        .or_else(|| stream.filters().ok().filter(|f| f.is_empty()).map(|_| stream.content.clone()))?;
    Some(cmap::parse(&data))
}

impl Font {
    /// Reads a font dictionary. Never fails: what cannot be read falls back to defaults.
    pub fn load(doc: &Document, dict: &Dictionary) -> Font {
        let subtype = get(doc, dict, b"Subtype").and_then(|o| o.as_name().ok()).unwrap_or(b"Type1");
        let to_unicode = dict.get(b"ToUnicode").ok().and_then(|o| stream_cmap(doc, o)).filter(|m| m.has_unicode());
        if subtype == b"Type0" {
            Self::load_composite(doc, dict, to_unicode)
        } else {
            Self::load_simple(doc, dict, subtype, to_unicode)
        }
    }

    fn load_simple(doc: &Document, dict: &Dictionary, subtype: &[u8], to_unicode: Option<CMap>) -> Font {
        let table: Vec<Option<String>> = match dict.get_font_encoding(doc) {
            Ok(enc) => (0u8..=255)
                .map(|b| enc.bytes_to_string(&[b]).ok().filter(|s| !s.is_empty() && !s.chars().all(|c| c == '\u{0}')))
                .collect(),
            Err(_) => (0u8..=255).map(|b| (32..127).contains(&b).then(|| (b as char).to_string())).collect(),
        };
        let mut table = table;
        apply_builtin_encoding(doc, dict, &mut table);
        let base_font = get(doc, dict, b"BaseFont").and_then(|o| o.as_name().ok()).unwrap_or(b"");
        let mut widths = Widths {
            first_char: get(doc, dict, b"FirstChar").and_then(number).unwrap_or(0.0).max(0.0) as u32,
            simple: get(doc, dict, b"Widths")
                .and_then(|o| o.as_array().ok())
                .map(|a| a.iter().map(|w| number(deref(doc, w)).unwrap_or(0.0)).collect())
                .unwrap_or_default(),
            default: 0.0,
            ..Widths::default()
        };
        let missing = get(doc, dict, b"FontDescriptor")
            .and_then(|o| o.as_dict().ok())
            .and_then(|fd| get(doc, fd, b"MissingWidth"))
            .and_then(number)
            .filter(|w| *w > 0.0);
        // Without widths (standard 14 fonts often have none) an average glyph width keeps
        // positions roughly right: Courier is fixed at 600, the others average near 500.
        let is_courier = base_font.windows(7).any(|w| w == b"Courier");
        widths.default = missing.unwrap_or(if is_courier { 600.0 } else { 500.0 });
        let mut scale = 0.001;
        if subtype == b"Type3" {
            scale = get(doc, dict, b"FontMatrix")
                .and_then(|o| o.as_array().ok())
                .and_then(|a| a.first())
                .and_then(number)
                .map(|s| s.abs())
                .filter(|s| *s > 0.0 && s.is_finite())
                .unwrap_or(0.001);
        }
        Font {
            encoding: CodeEncoding::Simple(table.into_boxed_slice()),
            to_unicode,
            widths,
            scale,
            vertical: false,
            ascii_cids: false,
        }
    }

    fn load_composite(doc: &Document, dict: &Dictionary, to_unicode: Option<CMap>) -> Font {
        let mut vertical = false;
        let encoding = match dict.get(b"Encoding").ok().map(|o| deref(doc, o)) {
            Some(Object::Name(name)) => {
                let name = String::from_utf8_lossy(name).into_owned();
                vertical = name.ends_with("-V");
                predefined_encoding(&name)
            }
            Some(Object::Stream(_)) => {
                let embedded = dict.get(b"Encoding").ok().and_then(|o| stream_cmap(doc, o)).unwrap_or_default();
                vertical = embedded.vertical;
                CodeEncoding::Embedded(embedded)
            }
            _ => CodeEncoding::Unknown,
        };
        let descendant = get(doc, dict, b"DescendantFonts")
            .and_then(|o| o.as_array().ok())
            .and_then(|a| a.first())
            .and_then(|o| deref(doc, o).as_dict().ok());
        let mut widths = Widths { default: 1000.0, ..Widths::default() };
        let mut ascii_cids = false;
        if let Some(cid_font) = descendant {
            if let Some(dw) = get(doc, cid_font, b"DW").and_then(number) {
                widths.default = dw;
            }
            if let Some(w) = get(doc, cid_font, b"W").and_then(|o| o.as_array().ok()) {
                read_cid_widths(doc, w, &mut widths);
            }
            let ordering = get(doc, cid_font, b"CIDSystemInfo")
                .and_then(|o| o.as_dict().ok())
                .and_then(|si| get(doc, si, b"Ordering"))
                .and_then(|o| o.as_str().ok())
                .unwrap_or(b"");
            ascii_cids = matches!(ordering, b"Japan1" | b"GB1" | b"CNS1" | b"Korea1");
        }
        Font { encoding, to_unicode, widths, scale: 0.001, vertical, ascii_cids }
    }

    /// Splits a shown string into glyphs.
    pub fn decode(&self, bytes: &[u8]) -> Vec<DecodedGlyph> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let (code, len) = self.next_code(rest);
            let len = len.max(1);
            let code_bytes = &rest[..(len as usize).min(rest.len())];
            let text = self.unicode(code, len, code_bytes);
            let width = self.width(code, len) * self.scale;
            out.push(DecodedGlyph { text, width, is_space_code: len == 1 && code == 32 });
            i += len as usize;
        }
        out
    }

    fn next_code(&self, bytes: &[u8]) -> (u32, u8) {
        match &self.encoding {
            CodeEncoding::Simple(_) => (bytes[0] as u32, 1),
            CodeEncoding::Embedded(map) if !map.code_space.is_empty() => map.next_code(bytes, 2),
            CodeEncoding::Utf16 => {
                let (code, len) = take(bytes, 2);
                if (0xD800..0xDC00).contains(&code) && bytes.len() >= 4 { take(bytes, 4) } else { (code, len) }
            }
            CodeEncoding::Utf8 => {
                let len = match bytes[0] {
                    0x00..=0x7F => 1,
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                };
                take(bytes, len)
            }
            CodeEncoding::Utf32 => take(bytes, 4),
            CodeEncoding::Legacy(enc) => {
                let b = bytes[0];
                let two = if *enc == encoding_rs::SHIFT_JIS {
                    matches!(b, 0x81..=0x9F | 0xE0..=0xFC)
                } else {
                    b >= 0x81 && b != 0xFF
                };
                if *enc == encoding_rs::EUC_JP && b == 0x8F {
                    take(bytes, 3)
                } else {
                    take(bytes, if two { 2 } else { 1 })
                }
            }
            _ => match &self.to_unicode {
                Some(map) if !map.code_space.is_empty() => map.next_code(bytes, 2),
                _ => take(bytes, 2),
            },
        }
    }

    fn unicode(&self, code: u32, len: u8, code_bytes: &[u8]) -> String {
        if let Some(map) = &self.to_unicode
            && let Some(text) = map.unicode(code, len)
        {
            return clean(text);
        }
        let text = match &self.encoding {
            CodeEncoding::Simple(table) => table.get(code as usize).cloned().flatten(),
            CodeEncoding::Utf16 => Some(encoding_rs::UTF_16BE.decode_without_bom_handling(code_bytes).0.into_owned()),
            CodeEncoding::Utf8 => std::str::from_utf8(code_bytes).ok().map(str::to_owned),
            CodeEncoding::Utf32 => char::from_u32(code).map(String::from),
            CodeEncoding::Legacy(enc) => Some(
                enc.decode_without_bom_handling_and_without_replacement(code_bytes)
                    .map(|c| c.into_owned())
                    .unwrap_or_default(),
            ),
            CodeEncoding::Identity | CodeEncoding::Embedded(_) | CodeEncoding::Unknown => None,
        };
        text.map(clean).unwrap_or_default()
    }

    fn width(&self, code: u32, len: u8) -> f32 {
        match &self.encoding {
            CodeEncoding::Simple(_) => self.widths.simple_width(code),
            CodeEncoding::Identity | CodeEncoding::Unknown => self.widths.cid_width(Some(code)),
            CodeEncoding::Embedded(map) => self.widths.cid_width(map.cid(code, len)),
            CodeEncoding::Utf16 | CodeEncoding::Utf8 | CodeEncoding::Utf32 | CodeEncoding::Legacy(_) => {
                let ascii = (0x20..=0x7E).contains(&code);
                let cid = (self.ascii_cids && ascii).then(|| code - 31);
                match cid {
                    Some(_) => self.widths.cid_width(cid),
                    // Without the CID of a non-ASCII code, full width is the best guess for
                    // CJK text, and ASCII is proportional (about half width).
                    None if ascii => 500.0,
                    None => self.widths.default,
                }
            }
        }
    }
}

/// An embedded Type1 font program's own encoding (`dup 12 /fi put` in its clear-text part), as
/// (code, glyph name). TeX's fonts rely on it and carry no `/Encoding`.
fn builtin_encoding(doc: &Document, dict: &Dictionary) -> Vec<(u8, Vec<u8>)> {
    const MAX_FONT_BYTES: usize = 8 * 1024 * 1024;
    let Some(stream) = get(doc, dict, b"FontDescriptor")
        .and_then(|o| o.as_dict().ok())
        .and_then(|fd| get(doc, fd, b"FontFile"))
        .and_then(|o| o.as_stream().ok())
    else {
        return Vec::new();
    };
    let Ok(data) = stream.get_plain_content_with_limit(MAX_FONT_BYTES) else {
        return Vec::new();
    };
    let clear_len = get(doc, &stream.dict, b"Length1")
        .and_then(number)
        .map(|n| n.max(0.0) as usize)
        .unwrap_or(data.len())
        .min(data.len());
    let clear = &data[..clear_len];
    let clear = match clear.windows(5).position(|w| w == b"eexec") {
        Some(end) => &clear[..end],
        None => clear,
    };
    let words: Vec<&[u8]> = clear.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect();
    let mut out = Vec::new();
    for w in words.windows(4) {
        if w[0] == b"dup"
            && w[3] == b"put"
            && let Some(name) = w[2].strip_prefix(b"/")
            && let Some(code) = std::str::from_utf8(w[1]).ok().and_then(|c| c.parse::<u8>().ok())
        {
            out.push((code, name.to_vec()));
        }
    }
    out
}

/// Fills the table from the font program's built-in encoding: all of it when the font has no
/// `/Encoding`, else only the codes the `/Encoding` left unmapped. lopdf maps the glyph names,
/// through a synthetic font whose `/Differences` are those names.
fn apply_builtin_encoding(doc: &Document, dict: &Dictionary, table: &mut [Option<String>]) {
    let builtin = builtin_encoding(doc, dict);
    if builtin.is_empty() {
        return;
    }
    let override_all = !dict.has(b"Encoding");
    let mut differences = Vec::with_capacity(builtin.len() * 2);
    for (code, name) in &builtin {
        differences.push(Object::Integer(*code as i64));
        differences.push(Object::Name(name.clone()));
    }
    let mut encoding = Dictionary::new();
    encoding.set("Type", Object::Name(b"Encoding".to_vec()));
    encoding.set("Differences", Object::Array(differences));
    let mut synthetic = Dictionary::new();
    synthetic.set("Type", Object::Name(b"Font".to_vec()));
    synthetic.set("Subtype", Object::Name(b"Type1".to_vec()));
    synthetic.set("Encoding", Object::Dictionary(encoding));
    let Ok(mapped) = synthetic.get_font_encoding(doc) else {
        return;
    };
    for (code, name) in &builtin {
        let Some(slot) = table.get_mut(*code as usize) else {
            continue;
        };
        if !override_all && slot.is_some() {
            continue;
        }
        let text = mapped
            .bytes_to_string(&[*code])
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| glyph_name_to_unicode(&String::from_utf8_lossy(name)));
        if text.is_some() {
            *slot = text;
        }
    }
}

fn take(bytes: &[u8], len: usize) -> (u32, u8) {
    let len = len.min(bytes.len()).clamp(1, 4);
    (cmap::be_code(&bytes[..len]), len as u8)
}

/// Control characters from broken maps would only corrupt the text; typographic ligatures
/// (U+FB00..U+FB06) are spelled out so the words can be searched.
fn clean(text: String) -> String {
    let needs_work = text.chars().any(|c| (c.is_control() && c != '\t') || ('\u{FB00}'..='\u{FB06}').contains(&c));
    if !needs_work {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

fn predefined_encoding(name: &str) -> CodeEncoding {
    if name.starts_with("Identity-") {
        CodeEncoding::Identity
    } else if name.contains("UCS2") || name.contains("UTF16") {
        CodeEncoding::Utf16
    } else if name.contains("UTF8") {
        CodeEncoding::Utf8
    } else if name.contains("UTF32") {
        CodeEncoding::Utf32
    } else if name.contains("RKSJ") {
        CodeEncoding::Legacy(encoding_rs::SHIFT_JIS)
    } else if name.starts_with("EUC-") || name.starts_with("Ext-") {
        CodeEncoding::Legacy(encoding_rs::EUC_JP)
    } else if name.starts_with("GB") {
        CodeEncoding::Legacy(encoding_rs::GBK)
    } else if name.starts_with("B5") || name.starts_with("ETen") || name.starts_with("HKscs") {
        CodeEncoding::Legacy(encoding_rs::BIG5)
    } else if name.starts_with("KSC") {
        CodeEncoding::Legacy(encoding_rs::EUC_KR)
    } else {
        CodeEncoding::Unknown
    }
}

fn read_cid_widths(doc: &Document, w: &[Object], widths: &mut Widths) {
    /// Bounds the entries a hostile `W` array can add.
    const MAX_WIDTHS: usize = 200_000;
    let mut i = 0;
    let mut added = 0usize;
    while i < w.len() && added < MAX_WIDTHS {
        let Some(first) = number(deref(doc, &w[i])) else {
            break;
        };
        let first = first.max(0.0) as u32;
        match w.get(i + 1).map(|o| deref(doc, o)) {
            Some(Object::Array(list)) => {
                for (k, width) in list.iter().enumerate() {
                    if let Some(width) = number(deref(doc, width)) {
                        widths.cid_single.insert(first.saturating_add(k as u32), width);
                        added += 1;
                    }
                }
                i += 2;
            }
            Some(last) => {
                let (Some(last), Some(width)) = (number(last), w.get(i + 2).and_then(|o| number(deref(doc, o)))) else {
                    break;
                };
                widths.cid_ranges.push((first, last.max(0.0) as u32, width));
                added += 1;
                i += 3;
            }
            None => break,
        }
    }
}

/// Unicode for a glyph name, for the few names a `ToUnicode` map may use instead of hex.
pub(crate) fn glyph_name_to_unicode(name: &str) -> Option<String> {
    if let Some(hex) = name.strip_prefix("uni")
        && hex.len() >= 4
        && hex.len() % 4 == 0
    {
        let units: Option<Vec<u16>> =
            hex.as_bytes().chunks(4).map(|c| u16::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()).collect();
        return units.map(|u| String::from_utf16_lossy(&u));
    }
    if let Some(hex) = name.strip_prefix('u')
        && (4..=6).contains(&hex.len())
        && let Ok(cp) = u32::from_str_radix(hex, 16)
    {
        return char::from_u32(cp).map(String::from);
    }
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphanumeric() => Some(c.to_string()),
        _ => match name {
            "space" => Some(" ".into()),
            "ff" => Some("ff".into()),
            "fi" => Some("fi".into()),
            "fl" => Some("fl".into()),
            "ffi" => Some("ffi".into()),
            "ffl" => Some("ffl".into()),
            "period" => Some(".".into()),
            "comma" => Some(",".into()),
            "hyphen" => Some("-".into()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_cmaps() {
        assert!(matches!(predefined_encoding("UniJIS-UCS2-H"), CodeEncoding::Utf16));
        assert!(matches!(predefined_encoding("UniJIS-UTF16-V"), CodeEncoding::Utf16));
        assert!(matches!(predefined_encoding("90ms-RKSJ-H"), CodeEncoding::Legacy(_)));
        assert!(matches!(predefined_encoding("Identity-H"), CodeEncoding::Identity));
    }

    #[test]
    fn ucs2_codes_are_utf16_units() {
        let font = Font {
            encoding: CodeEncoding::Utf16,
            to_unicode: None,
            widths: Widths { default: 1000.0, ..Widths::default() },
            scale: 0.001,
            vertical: false,
            ascii_cids: true,
        };
        // "日本" then U+1F600 as a surrogate pair.
        let glyphs = font.decode(&[0x65, 0xE5, 0x67, 0x2C, 0xD8, 0x3D, 0xDE, 0x00]);
        let text: String = glyphs.iter().map(|g| g.text.as_str()).collect();
        assert_eq!(text, "日本\u{1F600}");
        assert_eq!(glyphs[0].width, 1.0);
    }

    #[test]
    fn shift_jis_codes() {
        let font = Font {
            encoding: CodeEncoding::Legacy(encoding_rs::SHIFT_JIS),
            to_unicode: None,
            widths: Widths::default(),
            scale: 0.001,
            vertical: false,
            ascii_cids: false,
        };
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode("A売上");
        let text: String = font.decode(&bytes).iter().map(|g| g.text.clone()).collect();
        assert_eq!(text, "A売上");
    }

    #[test]
    fn glyph_names() {
        assert_eq!(glyph_name_to_unicode("uni3042").as_deref(), Some("あ"));
        assert_eq!(glyph_name_to_unicode("u1F600").as_deref(), Some("\u{1F600}"));
        assert_eq!(glyph_name_to_unicode("A").as_deref(), Some("A"));
        assert_eq!(glyph_name_to_unicode("nonsense"), None);
    }
}
