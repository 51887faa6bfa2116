//! Character classes, normalisation of full-width forms, and language detection.
//!
//! Everything here works on `char`s and never slices strings at computed byte offsets, so no
//! input can make it panic.

/// Hiragana, including the iteration marks.
pub(crate) fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{309F}')
}

/// Katakana (full and half width), including the middle dot and the prolonged sound mark.
pub(crate) fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A0}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9F}')
}

pub(crate) fn is_kana(c: char) -> bool {
    is_hiragana(c) || is_katakana(c)
}

/// CJK ideographs (unified, extensions, compatibility) and the ideographic marks 々 〆 〇.
pub(crate) fn is_han(c: char) -> bool {
    matches!(c,
        '\u{4E00}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{323AF}'
        | '々' | '〆' | '〇'
    )
}

pub(crate) fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7AF}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

/// A CJK letter: ideograph, kana or Hangul.
pub(crate) fn is_cjk(c: char) -> bool {
    is_han(c) || is_kana(c) || is_hangul(c)
}

/// A character that belongs to East Asian text: CJK letters, CJK punctuation, full-width forms.
pub(crate) fn is_wide(c: char) -> bool {
    is_cjk(c) || matches!(c, '\u{3000}'..='\u{303F}' | '\u{FF00}'..='\u{FFEF}')
}

/// Latin letters (ASCII and the Latin-1/Extended blocks).
pub(crate) fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || (matches!(c, '\u{00C0}'..='\u{024F}') && c.is_alphabetic())
}

/// Whether a language code names a language written without spaces between words.
pub(crate) fn is_cjk_language(language: &str) -> bool {
    matches!(language, "ja" | "zh" | "ko")
}

/// Whether a line is mostly East Asian text (so that its length is judged in wide characters).
pub(crate) fn is_cjk_line(text: &str) -> bool {
    let (mut cjk, mut latin) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
        } else if is_latin_letter(c) {
            latin += 1;
        }
    }
    cjk > 0 && cjk * 2 >= latin
}

/// Map full-width ASCII forms to ASCII, the ideographic space to a space, `￥` to `¥` and the
/// minus sign to `-`. One character in, one character out, so positions can be mapped back.
pub(crate) fn normalize_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        '\u{FFE5}' => '¥',
        '\u{FFE1}' => '£',
        '\u{2212}' | '\u{2010}' | '\u{2011}' => '-',
        _ => c,
    }
}

/// [`normalize_char`] over a whole string.
pub(crate) fn normalize(text: &str) -> String {
    text.chars().map(normalize_char).collect()
}

/// A normalised copy of a text that can map byte offsets back to the original, so that matches
/// found in the normalised text are reported as written.
pub(crate) struct NormText<'a> {
    original: &'a str,
    pub text: String,
    /// `(normalised offset, original offset)` after every character whose UTF-8 length changed;
    /// between two entries the bytes correspond one to one.
    shifts: Vec<(usize, usize)>,
}

impl<'a> NormText<'a> {
    pub(crate) fn new(original: &'a str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut shifts = Vec::new();
        for (index, c) in original.char_indices() {
            let n = normalize_char(c);
            text.push(n);
            if n.len_utf8() != c.len_utf8() {
                shifts.push((text.len(), index + c.len_utf8()));
            }
        }
        NormText { original, text, shifts }
    }

    /// The byte offset in the original text of a byte offset in the normalised text.
    pub(crate) fn original_offset(&self, normalised: usize) -> usize {
        let index = self.shifts.partition_point(|&(n, _)| n <= normalised);
        match index.checked_sub(1).and_then(|i| self.shifts.get(i)) {
            Some(&(n, o)) => o + (normalised - n),
            None => normalised,
        }
    }

    /// The original text of the normalised range `start..end` (falls back to the normalised
    /// text should the mapping ever not land on character boundaries).
    pub(crate) fn original(&self, start: usize, end: usize) -> &str {
        let (a, b) = (self.original_offset(start), self.original_offset(end));
        self.original.get(a..b).or_else(|| self.text.get(start..end)).unwrap_or("")
    }
}

/// The script counts language detection looks at.
#[derive(Default, Debug)]
struct ScriptCounts {
    latin: usize,
    han: usize,
    kana: usize,
    hangul: usize,
    cyrillic: usize,
    greek: usize,
    arabic: usize,
    hebrew: usize,
    thai: usize,
    devanagari: usize,
    /// 々 and 〆, and Japanese-only character forms (売, 円, 払, ...).
    japanese_marks: usize,
    /// 、 (Japanese comma, also a Chinese enumeration comma) and ， (Chinese comma).
    ideographic_comma: usize,
    fullwidth_comma: usize,
    /// Characters frequent in Chinese and absent from Japanese (simplified forms, particles).
    chinese_marks: usize,
}

/// How many characters detection looks at; the start of a unit tells its language.
const DETECTION_CHARS: usize = 100_000;

/// Characters common in Chinese and absent (or rare) in Japanese.
const CHINESE_MARKS: &[char] = &[
    '们', '这', '吗', '呢', '么', '说', '还', '对', '过', '个', '为', '时', '吧', '您', '该', '从', '让', '给', '发',
    '实', '价', '处', '经', '关', '图', '卖', '气', '读', '单', '总', '续', '转',
];

/// Japanese forms of characters (shinjitai) that Chinese writes differently, so that Japanese
/// without kana (a sheet of headers like 売上高, 請求金額) is still told from Chinese.
const JAPANESE_KANJI: &[char] = &[
    '売', '円', '図', '駅', '広', '験', '済', '払', '対', '発', '変', '気', '楽', '読', '単', '戦', '労', '営', '覧',
    '経', '続', '総', '関', '転', '録', '県', '検', '処', '実', '価', '様', '込', '畑', '働', '枠', '税', '従', '籍',
];

/// Detect the language of `text`: `ja`, `zh`, `ko`, `en`, a few other Latin-script languages
/// (`de`, `fr`, `es`, `it`, `pt`, `nl`), `ru`, `el`, `ar`, `he`, `th`, `hi`. Falls back to the
/// hint (its primary subtag) and then to `und` when the text has no letters.
pub(crate) fn detect_language(text: &str, hint: Option<&str>) -> String {
    let hint = hint
        .map(|h| h.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase())
        .filter(|h| !h.is_empty() && h.len() <= 8 && h.chars().all(|c| c.is_ascii_alphabetic()));
    let mut n = ScriptCounts::default();
    for c in text.chars().take(DETECTION_CHARS) {
        match c {
            _ if is_latin_letter(c) => n.latin += 1,
            _ if is_kana(c) && c != '・' && c != 'ー' => n.kana += 1,
            '々' | '〆' => {
                n.japanese_marks += 1;
                n.han += 1
            }
            _ if is_han(c) => {
                n.han += 1;
                if CHINESE_MARKS.contains(&c) {
                    n.chinese_marks += 1;
                } else if JAPANESE_KANJI.contains(&c) {
                    n.japanese_marks += 1;
                }
            }
            _ if is_hangul(c) => n.hangul += 1,
            '、' => n.ideographic_comma += 1,
            '，' => n.fullwidth_comma += 1,
            '\u{0400}'..='\u{04FF}' => n.cyrillic += 1,
            '\u{0370}'..='\u{03FF}' => n.greek += 1,
            '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' => n.arabic += 1,
            '\u{0590}'..='\u{05FF}' => n.hebrew += 1,
            '\u{0E00}'..='\u{0E7F}' => n.thai += 1,
            '\u{0900}'..='\u{097F}' => n.devanagari += 1,
            _ => {}
        }
    }
    // A CJK character carries about as much as a short Latin word; weigh them accordingly so a
    // Japanese text with English product names stays Japanese.
    let cjk = (n.han + n.kana + n.hangul) * 3;
    let others =
        [(n.cyrillic, "ru"), (n.greek, "el"), (n.arabic, "ar"), (n.hebrew, "he"), (n.thai, "th"), (n.devanagari, "hi")];
    let (other_count, other_code) =
        others.iter().copied().fold((0, "und"), |best, x| if x.0 > best.0 { x } else { best });
    let fallback = || hint.clone().unwrap_or_else(|| "und".to_string());
    if cjk == 0 && n.latin == 0 && other_count == 0 {
        return fallback();
    }
    if cjk >= n.latin && cjk >= other_count {
        return cjk_language(&n, hint.as_deref());
    }
    if n.latin >= other_count {
        return latin_language(text, hint.as_deref());
    }
    match hint {
        // The hint may name a language of the same script that the counts cannot tell apart
        // (uk for Cyrillic, fa for Arabic, ...); trust it unless it is a CJK or Latin one.
        Some(h) if !is_cjk_language(&h) && !LATIN_LANGUAGES.contains(&h.as_str()) && h != "en" => h,
        _ => other_code.to_string(),
    }
}

fn cjk_language(n: &ScriptCounts, hint: Option<&str>) -> String {
    if n.hangul > n.han + n.kana {
        return "ko".into();
    }
    // Japanese prose is a third or more kana; a few kana among many ideographs (a table of company
    // names, say) still points to Japanese, a stray one in a long Chinese text does not.
    if n.kana > 0 && (n.kana * 30 >= n.han || hint == Some("ja")) {
        return "ja".into();
    }
    if n.japanese_marks > n.chinese_marks {
        return "ja".into();
    }
    if let Some(h @ ("ja" | "zh")) = hint {
        return h.into();
    }
    if n.chinese_marks > 0 || n.fullwidth_comma > n.ideographic_comma {
        return "zh".into();
    }
    if n.ideographic_comma > 0 || n.kana > 0 {
        return "ja".into();
    }
    "zh".into()
}

/// Latin-script languages told apart by their most frequent words.
const LATIN_LANGUAGES: &[&str] = &["de", "fr", "es", "it", "pt", "nl"];

const FREQUENT_WORDS: &[(&str, &[&str])] = &[
    (
        "en",
        &["the", "and", "of", "to", "is", "in", "that", "for", "with", "this", "are", "was", "on", "it", "be", "as"],
    ),
    (
        "de",
        &[
            "der", "die", "und", "das", "ist", "nicht", "mit", "ein", "eine", "den", "von", "zu", "für", "auf", "sich",
            "dem",
        ],
    ),
    (
        "fr",
        &[
            "le", "les", "et", "est", "des", "une", "pour", "dans", "que", "du", "sur", "pas", "au", "avec", "il",
            "sont",
        ],
    ),
    (
        "es",
        &["el", "los", "las", "y", "es", "que", "del", "por", "para", "una", "con", "se", "como", "pero", "su", "al"],
    ),
    (
        "it",
        &[
            "il", "di", "che", "è", "per", "una", "del", "della", "non", "sono", "con", "gli", "nel", "anche", "come",
            "si",
        ],
    ),
    ("pt", &["o", "os", "que", "é", "do", "da", "em", "para", "com", "não", "uma", "um", "no", "na", "dos", "ao"]),
    (
        "nl",
        &[
            "het", "een", "en", "van", "is", "dat", "op", "te", "niet", "met", "voor", "zijn", "die", "ook", "wordt",
            "bij",
        ],
    ),
];

fn latin_language(text: &str, hint: Option<&str>) -> String {
    let mut hits = [0usize; 7];
    let words = text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).take(3000);
    for word in words {
        let lower = word.to_lowercase();
        for (i, (_, list)) in FREQUENT_WORDS.iter().enumerate() {
            if list.contains(&lower.as_str()) {
                hits[i] += 1;
            }
        }
    }
    let english = hits[0];
    let (best, best_hits) = hits.iter().enumerate().skip(1).fold((0, 0), |b, (i, &h)| if h > b.1 { (i, h) } else { b });
    if best_hits >= 3 && best_hits * 2 > english * 3 {
        return FREQUENT_WORDS[best].0.to_string();
    }
    match hint {
        Some(h) if english < 2 && !is_cjk_language(h) => h.to_string(),
        _ => "en".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_japanese_chinese_korean_english() {
        assert_eq!(detect_language("請求書の発行日は2026年4月30日です。", None), "ja");
        assert_eq!(detect_language("BEACON処理フロー", None), "ja");
        assert_eq!(detect_language("我们这个项目的进度很好，谢谢。", None), "zh");
        assert_eq!(detect_language("売上高", Some("ja")), "ja");
        assert_eq!(detect_language("| 月 | 売上高(千円) | 計上日 |", None), "ja");
        assert_eq!(detect_language("销售额 计上日", None), "zh");
        assert_eq!(detect_language("日本語々", None), "ja");
        assert_eq!(detect_language("안녕하세요 세계", None), "ko");
        assert_eq!(detect_language("The invoice is due on Friday.", Some("ja")), "en");
        assert_eq!(detect_language("Tokyo (東京) is the capital of Japan and its largest city.", None), "en");
        assert_eq!(detect_language("Die Rechnung ist nicht bezahlt und die Frist ist abgelaufen.", None), "de");
        assert_eq!(detect_language("Привет мир", None), "ru");
    }

    #[test]
    fn falls_back_to_the_hint_then_und() {
        assert_eq!(detect_language("12345 -- 678", Some("ja-JP")), "ja");
        assert_eq!(detect_language("", None), "und");
        assert_eq!(detect_language("!!!", Some("  ")), "und");
    }

    #[test]
    fn maps_normalised_offsets_back() {
        let text = "金額：￥１２，８５０（税込）abc";
        let norm = NormText::new(text);
        assert_eq!(norm.text, "金額:¥12,850(税込)abc");
        let start = norm.text.find('¥').unwrap_or(0);
        let end = norm.text.find('(').unwrap_or(0);
        assert_eq!(norm.original(start, end), "￥１２，８５０");
        let abc = norm.text.find("abc").unwrap_or(0);
        assert_eq!(norm.original(abc, norm.text.len()), "abc");
    }
}
