//! Dates: ISO and numeric (`2026-04-30`, `2026/04/30`, `2026.04.30`, `04/30/2026`,
//! `30.04.2026`), English (`30 April 2026`, `April 30, 2026`, `Apr 30 2026`, `April 2026`),
//! Japanese/Chinese/Korean (`2026年4月30日`, `2026年4月`, `2026년 4월 30일`), Japanese eras
//! (`令和8年4月30日`, `平成元年1月8日`), full-width digits, and month-day without a year
//! (`4月30日`, `April 30`) with `iso: null`.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;

use super::script::NormText;

/// A date as written and as ISO 8601 (`YYYY-MM-DD`, `YYYY-MM`, or `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DateHit {
    pub text: String,
    pub iso: Option<String>,
    /// Byte offset in the content, for ordering.
    pub start: usize,
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid date pattern")
}

const MONTH: &str = r"(?i:(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?))";

static ERA: LazyLock<Regex> =
    LazyLock::new(|| re(r"(令和|平成|昭和|大正)\s?(元|\d{1,2})\s?年\s?(\d{1,2})\s?月(?:\s?(\d{1,2})\s?日)?"));
static CJK_YMD: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\d{4})\s?[年년]\s?(\d{1,2})\s?[月월](?:\s?(\d{1,2})\s?[日일])?"));
static CJK_MD: LazyLock<Regex> = LazyLock::new(|| re(r"(\d{1,2})\s?[月월]\s?(\d{1,2})\s?[日일]"));
static NUMERIC_YMD: LazyLock<Regex> = LazyLock::new(|| re(r"(\d{4})([-/.])(\d{1,2})([-/.])(\d{1,2})"));
static NUMERIC_DMY: LazyLock<Regex> = LazyLock::new(|| re(r"(\d{1,2})([-/.])(\d{1,2})([-/.])(\d{4})"));
static EN_DMY: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTH}\.?,?\s+(\d{{4}})")));
static EN_MDY: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"{MONTH}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})")));
static EN_MY: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"{MONTH}\.?,?\s+(\d{{4}})")));
static EN_MD: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"{MONTH}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?")));

fn month_number(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let names = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    names.iter().position(|m| lower.starts_with(m)).and_then(|p| u32::try_from(p + 1).ok())
}

fn full(year: i32, month: u32, day: u32) -> Option<Option<String>> {
    NaiveDate::from_ymd_opt(year, month, day).map(|d| Some(d.format("%Y-%m-%d").to_string()))
}

fn year_month(year: i32, month: u32) -> Option<Option<String>> {
    ((1..=12).contains(&month) && (1000..=9999).contains(&year)).then(|| Some(format!("{year:04}-{month:02}")))
}

fn plausible_year(year: i32) -> bool {
    (1000..=2999).contains(&year)
}

/// A candidate: normalised range and ISO (outer `None` = not a date at all).
type Candidate = (usize, usize, Option<String>);

fn num<T: std::str::FromStr>(c: &regex::Captures, i: usize) -> Option<T> {
    c.get(i).and_then(|m| m.as_str().parse().ok())
}

fn candidates(text: &str) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let bytes = text.as_bytes();
    // No digit (or decimal point) glued to either side of a numeric match.
    let clean_edges = |start: usize, end: usize| {
        let before = start.checked_sub(1).and_then(|i| bytes.get(i)).copied();
        let after = bytes.get(end).copied();
        let after2 = bytes.get(end + 1).copied();
        let glued_digit = before.is_some_and(|b| b.is_ascii_digit()) || after.is_some_and(|b| b.is_ascii_digit());
        let continues = matches!(after, Some(b'.' | b'/' | b'-')) && after2.is_some_and(|b| b.is_ascii_digit());
        !glued_digit && !continues
    };
    let no_digit_before =
        |start: usize| !start.checked_sub(1).and_then(|i| bytes.get(i)).is_some_and(|b| b.is_ascii_digit());
    // Not inside a word: `Remay 5`, `Mayor 2026`.
    let word_start =
        |start: usize| !start.checked_sub(1).and_then(|i| bytes.get(i)).is_some_and(|b| b.is_ascii_alphabetic());
    let capitalised = |s: &str| s.chars().next().is_some_and(|c| c.is_uppercase());
    let mut push = |m: regex::Match, iso: Option<Option<String>>| {
        if let Some(iso) = iso {
            out.push((m.start(), m.end(), iso));
        }
    };

    for c in ERA.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let era_start = match &c[1] {
            "令和" => 2018,
            "平成" => 1988,
            "昭和" => 1925,
            _ => 1911,
        };
        let n: Option<i32> = if &c[2] == "元" { Some(1) } else { num(&c, 2) };
        let (Some(n), Some(month)) = (n, num::<u32>(&c, 3)) else { continue };
        if n < 1 {
            continue;
        }
        let year = era_start + n;
        let iso = match num::<u32>(&c, 4) {
            Some(day) => full(year, month, day),
            None => year_month(year, month),
        };
        push(m, iso);
    }
    for c in CJK_YMD.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let (Some(year), Some(month)) = (num::<i32>(&c, 1), num::<u32>(&c, 2)) else { continue };
        if !plausible_year(year) || !no_digit_before(m.start()) {
            continue;
        }
        let iso = match num::<u32>(&c, 3) {
            Some(day) => full(year, month, day),
            None => year_month(year, month),
        };
        push(m, iso);
    }
    for c in CJK_MD.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let (Some(month), Some(day)) = (num::<u32>(&c, 1), num::<u32>(&c, 2)) else { continue };
        // Valid in a leap year, so 2月29日 passes.
        if no_digit_before(m.start()) && NaiveDate::from_ymd_opt(2024, month, day).is_some() {
            push(m, Some(None));
        }
    }
    for c in NUMERIC_YMD.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        if c[2] != c[4] || !clean_edges(m.start(), m.end()) {
            continue;
        }
        let (Some(year), Some(month), Some(day)) = (num::<i32>(&c, 1), num::<u32>(&c, 3), num::<u32>(&c, 5)) else {
            continue;
        };
        if plausible_year(year) {
            push(m, full(year, month, day));
        }
    }
    for c in NUMERIC_DMY.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        if c[2] != c[4] || !clean_edges(m.start(), m.end()) {
            continue;
        }
        let (Some(a), Some(b), Some(year)) = (num::<u32>(&c, 1), num::<u32>(&c, 3), num::<i32>(&c, 5)) else {
            continue;
        };
        if !plausible_year(year) {
            continue;
        }
        // `/` and `-`: US month/day unless the first number cannot be a month. `.`: European
        // day.month unless the second cannot be a month.
        let (month, day) = if &c[2] == "." {
            if b > 12 && a <= 12 { (a, b) } else { (b, a) }
        } else if a > 12 && b <= 12 {
            (b, a)
        } else {
            (a, b)
        };
        push(m, full(year, month, day));
    }
    for c in EN_DMY.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let (Some(day), Some(month), Some(year)) = (num::<u32>(&c, 1), month_number(&c[2]), num::<i32>(&c, 3)) else {
            continue;
        };
        if capitalised(&c[2]) && clean_edges(m.start(), m.end()) && plausible_year(year) {
            push(m, full(year, month, day));
        }
    }
    for c in EN_MDY.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let (Some(month), Some(day), Some(year)) = (month_number(&c[1]), num::<u32>(&c, 2), num::<i32>(&c, 3)) else {
            continue;
        };
        if capitalised(&c[1]) && word_start(m.start()) && clean_edges(m.start(), m.end()) && plausible_year(year) {
            push(m, full(year, month, day));
        }
    }
    for c in EN_MY.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let (Some(month), Some(year)) = (month_number(&c[1]), num::<i32>(&c, 2)) else { continue };
        if capitalised(&c[1]) && word_start(m.start()) && clean_edges(m.start(), m.end()) && plausible_year(year) {
            push(m, year_month(year, month));
        }
    }
    for c in EN_MD.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let (Some(month), Some(day)) = (month_number(&c[1]), num::<u32>(&c, 2)) else { continue };
        let valid = NaiveDate::from_ymd_opt(2024, month, day).is_some();
        if valid && capitalised(&c[1]) && word_start(m.start()) && clean_edges(m.start(), m.end()) {
            push(m, Some(None));
        }
    }
    out
}

/// Dates in `text`, in order of appearance, overlapping matches resolved in favour of the
/// earliest and then the longest, deduplicated by ISO date (or by text when unresolved), at most
/// `limit`.
pub(crate) fn extract(norm: &NormText, limit: usize) -> Vec<DateHit> {
    let mut all = candidates(&norm.text);
    all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<DateHit> = Vec::new();
    let mut covered_until = 0;
    for (start, end, iso) in all {
        if start < covered_until {
            continue;
        }
        covered_until = end;
        let text = norm.original(start, end).trim().to_string();
        let duplicate = out.iter().any(|d| match (&d.iso, &iso) {
            (Some(a), Some(b)) => a == b,
            (None, None) => d.text == text,
            _ => false,
        });
        if !duplicate && !text.is_empty() {
            out.push(DateHit { text, iso, start: norm.original_offset(start) });
            if out.len() == limit {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dates(text: &str) -> Vec<(String, Option<String>)> {
        extract(&NormText::new(text), 20).into_iter().map(|d| (d.text, d.iso)).collect()
    }

    fn d(text: &str, iso: Option<&str>) -> (String, Option<String>) {
        (text.to_string(), iso.map(str::to_string))
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(
            dates("2026-04-30, 2026/05/01, 2026.06.02, 04/30/2027, 30/04/2028, 30.04.2029, 2026-04-30T10:00Z"),
            vec![
                d("2026-04-30", Some("2026-04-30")),
                d("2026/05/01", Some("2026-05-01")),
                d("2026.06.02", Some("2026-06-02")),
                d("04/30/2027", Some("2027-04-30")),
                d("30/04/2028", Some("2028-04-30")),
                d("30.04.2029", Some("2029-04-30")),
            ]
        );
    }

    #[test]
    fn invalid_and_glued_numbers_are_not_dates() {
        assert!(dates("2026-02-30 and 2026/13/01").is_empty());
        assert!(dates("version 2026.04.30.1 and 12026-04-30 and 1.2.3").is_empty());
        assert!(dates("Invoice No: INV-2026-001").is_empty());
    }

    #[test]
    fn english_dates() {
        assert_eq!(
            dates(
                "Due 30 April 2026; signed April 30, 2026 (dup); Apr 1 2027; 3rd of May 2026; from June 2026; on March 5; Mayor 2026 may 5"
            ),
            vec![
                d("30 April 2026", Some("2026-04-30")),
                d("Apr 1 2027", Some("2027-04-01")),
                d("3rd of May 2026", Some("2026-05-03")),
                d("June 2026", Some("2026-06")),
                d("March 5", None),
            ]
        );
    }

    #[test]
    fn japanese_dates_and_eras() {
        assert_eq!(
            dates(
                "請求日：2026年4月30日　期限：２０２６年５月３１日、対象 2026年4月。令和8年4月1日、平成元年1月8日、昭和64年1月7日、12月25日"
            ),
            vec![
                d("2026年4月30日", Some("2026-04-30")),
                d("２０２６年５月３１日", Some("2026-05-31")),
                d("2026年4月", Some("2026-04")),
                d("令和8年4月1日", Some("2026-04-01")),
                d("平成元年1月8日", Some("1989-01-08")),
                d("昭和64年1月7日", Some("1989-01-07")),
                d("12月25日", None),
            ]
        );
        assert_eq!(dates("2026년 4월 30일"), vec![d("2026년 4월 30일", Some("2026-04-30"))]);
        assert!(dates("2026年2月30日").is_empty());
    }
}
