//! Dominant language of a text, told by Unicode script: enough to pick prompts and to tell
//! Japanese from Chinese, not a statistical language identifier.

#[derive(Default)]
struct Counts {
    kana: usize,
    han: usize,
    hangul: usize,
    latin: usize,
    arabic: usize,
    hebrew: usize,
    cyrillic: usize,
    greek: usize,
    thai: usize,
    /// Japanese punctuation (、「」『』) against the Chinese full-width comma.
    ja_punct: usize,
    zh_punct: usize,
    /// Kanji only Japanese writes so (shinjitai) against characters only simplified Chinese has.
    ja_kanji: usize,
    zh_hanzi: usize,
}

/// Common kanji whose Japanese form differs from both simplified and traditional Chinese, so
/// that kana-less Japanese (headings, tables: 売上, 営業部, 社員一覧) is still told apart.
const JAPANESE_ONLY_KANJI: &str =
    "売営円発図広駅歳読済変価帰気転伝様辺択沢県労込畑峠枠戻払単働覚関鉄楽薬検険験続経総録処拠実権覧厳従絵";
/// Common characters found only in simplified Chinese.
const SIMPLIFIED_ONLY_HANZI: &str =
    "们这个说时会为对国学与业务员东车长门问间见语话进过还没认识应该从现发电开关头买卖边";

/// Fewest letters worth judging: CJK characters carry more per character than letters do.
const MIN_LETTERS: usize = 12;
const CJK_WEIGHT: usize = 3;

/// Tells the dominant language of `text` by script.
///
/// Returns `"ja"` when kana are present (or the text is mostly Han with Japanese punctuation),
/// `"zh"` for Han otherwise, `"ko"` for Hangul, `"ar"`, `"he"`, `"ru"` (Cyrillic), `"el"`,
/// `"th"`, `"en"` when mostly Latin, and `None` when there is too little text to tell.
///
/// ```
/// use beacon_ingest::detect_language;
/// assert_eq!(detect_language("売上の集計をお願いします").as_deref(), Some("ja"));
/// assert_eq!(detect_language("The quarterly report is attached.").as_deref(), Some("en"));
/// assert_eq!(detect_language("ok"), None);
/// ```
pub fn detect_language(text: &str) -> Option<String> {
    let mut c = Counts::default();
    for ch in text.chars() {
        match ch as u32 {
            // Katakana middle dot and prolonged sound mark appear in Chinese text too.
            0x30FB | 0x30FC => {}
            0x3040..=0x309F | 0x30A0..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => c.kana += 1,
            0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF => {
                c.han += 1;
                if JAPANESE_ONLY_KANJI.contains(ch) {
                    c.ja_kanji += 1;
                } else if SIMPLIFIED_ONLY_HANZI.contains(ch) {
                    c.zh_hanzi += 1;
                }
            }
            0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => c.hangul += 1,
            0x0600..=0x06FF | 0x0750..=0x077F | 0x08A0..=0x08FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => c.arabic += 1,
            0x0590..=0x05FF | 0xFB1D..=0xFB4F => c.hebrew += 1,
            0x0400..=0x052F => c.cyrillic += 1,
            0x0370..=0x03FF | 0x1F00..=0x1FFF => c.greek += 1,
            0x0E00..=0x0E7F => c.thai += 1,
            0x3001 | 0x300C..=0x300F => c.ja_punct += 1,
            0xFF0C => c.zh_punct += 1,
            _ if ch.is_ascii_alphabetic() => c.latin += 1,
            0x00C0..=0x024F => c.latin += 1,
            _ => {}
        }
    }
    let cjk = c.kana + c.han + c.hangul;
    let others = c.latin + c.arabic + c.hebrew + c.cyrillic + c.greek + c.thai;
    if cjk * CJK_WEIGHT + others < MIN_LETTERS {
        return None;
    }
    if cjk * CJK_WEIGHT >= others {
        let lang = if c.hangul > c.kana + c.han {
            "ko"
        } else if (c.kana > 0 && c.kana * 100 >= cjk) || c.ja_punct + c.ja_kanji > c.zh_punct + c.zh_hanzi {
            "ja"
        } else {
            "zh"
        };
        return Some(lang.to_string());
    }
    let candidates =
        [(c.latin, "en"), (c.arabic, "ar"), (c.hebrew, "he"), (c.cyrillic, "ru"), (c.greek, "el"), (c.thai, "th")];
    let (count, lang) = candidates.iter().max_by_key(|(n, _)| *n)?;
    (*count > 0).then(|| lang.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(s: &str) -> Option<String> {
        detect_language(s)
    }

    #[test]
    fn scripts() {
        assert_eq!(lang("BEACON処理フローの設計について説明します。LLM API").as_deref(), Some("ja"));
        assert_eq!(lang("会議資料、「売上報告」を参照。本日午後提出。").as_deref(), Some("ja"));
        assert_eq!(lang("我们今天讨论销售报告，明天提交。").as_deref(), Some("zh"));
        assert_eq!(lang("月 売上高 前年比 計上日 社員番号 氏名 部署 営業部 経理部").as_deref(), Some("ja"));
        assert_eq!(lang("銷售報告 年度 部門 營業額 員工 姓名").as_deref(), Some("zh"));
        assert_eq!(lang("안녕하세요 오늘 회의 자료입니다").as_deref(), Some("ko"));
        assert_eq!(lang("مرحبا بكم في التقرير السنوي للشركة").as_deref(), Some("ar"));
        assert_eq!(lang("שלום וברוכים הבאים לדוח השנתי").as_deref(), Some("he"));
        assert_eq!(lang("Добро пожаловать в годовой отчёт").as_deref(), Some("ru"));
        assert_eq!(lang("Καλώς ήρθατε στην ετήσια αναφορά").as_deref(), Some("el"));
        assert_eq!(lang("ยินดีต้อนรับสู่รายงานประจำปี").as_deref(), Some("th"));
        assert_eq!(lang("The quarterly numbers look fine.").as_deref(), Some("en"));
    }

    #[test]
    fn too_little_text() {
        assert_eq!(lang("").as_deref(), None);
        assert_eq!(lang("12345 67890 !!!").as_deref(), None);
        assert_eq!(lang("売上").as_deref(), None);
        assert_eq!(lang("abc").as_deref(), None);
    }
}
