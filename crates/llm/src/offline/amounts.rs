//! Monetary amounts: symbols (`$1,234.56`, `€12`, `£3.50`, `¥12,850`), ISO codes before or after
//! (`USD 1,000`, `5.000,00 EUR`), Japanese/Chinese units with multipliers (`12,850円`,
//! `1万2千円`, `1.2億円`, `12850千円`, `100元`), `$1.2 million`; and the numbers in table
//! columns or fields whose name states a currency (`売上高(千円)`, `Amount (USD)`) or is an amount
//! word (`請求金額`: yen in a Japanese document).

use std::sync::LazyLock;

use regex::Regex;

use super::script::NormText;

/// An amount as written, its value (multipliers applied) and ISO 4217 currency.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AmountHit {
    pub text: String,
    pub value: Option<f64>,
    pub currency: Option<String>,
    /// Byte offset in the content, for ordering.
    pub start: usize,
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid amount pattern")
}

/// A number: European `5.000,00` and `1.234.567`, English `1,234.56`, plain `12850` / `3.5`.
const NUM: &str = r"(?:\d{1,3}(?:\.\d{3})+,\d{1,2}|\d{1,3}(?:\.\d{3}){2,}|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)";
const CODES: &str = "USD|EUR|GBP|JPY|CNY|RMB|AUD|CAD|CHF|HKD|SGD|KRW|INR|NZD|SEK|NOK|DKK|BRL|RUB|MXN|TWD|THB";

static SYMBOL_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"([-▲△])?(US\$|A\$|AU\$|C\$|CA\$|HK\$|S\$|NZ\$|R\$|\$|€|£|¥|₩|₹|₽|人民币|人民幣)\s?(-)?({NUM})(\s?(?:million|billion|trillion|thousand)\b|(?:mn|bn|[kKmMbB])\b)?(?:\s?[元円])?"
    ))
});
static CODE_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(r"([-▲△])?({CODES})\s?(-)?({NUM})(\s?(?:million|billion|trillion|thousand)\b|(?:mn|bn|[kKmMbB])\b)?"))
});
static CODE_SUFFIX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(r"([-▲△])?({NUM})(\s?(?:million|billion|trillion|thousand))?\s?({CODES}|dollars?|euros?|yen)\b"))
});
/// Japanese and Chinese units, with 百/千/万/億/兆 multipliers between and after the numbers.
static CJK_SUFFIX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"([-▲△])?((?:{NUM}\s?[百千万億兆]+\s?)*{NUM}\s?[百千万億兆]*)\s?(円|元|人民币|人民幣|米ドル|ドル|ユーロ|ポンド|ウォン|원|块)"
    ))
});
static NUM_WITH_MULTIPLIER: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"({NUM})\s?([百千万億兆]*)")));

/// Parse a number written with thousands separators (`1,234.56`, `5.000,00`, `1.234.567`).
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '.') {
        return None;
    }
    let dots = t.matches('.').count();
    let commas = t.matches(',').count();
    let plain: String = match (dots, commas) {
        (0, _) => t.replace(',', ""),
        (_, 0) if dots >= 2 => t.replace('.', ""),
        (_, 0) => t.to_string(),
        _ => {
            let last_dot = t.rfind('.')?;
            let last_comma = t.rfind(',')?;
            if last_comma > last_dot { t.replace('.', "").replace(',', ".") } else { t.replace(',', "") }
        }
    };
    plain.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A cell or field value that is just a number, perhaps negative or in accounting parentheses,
/// perhaps with a currency symbol: `12850`, `-1,000`, `(1,000)`, `△500`, `¥12,850`.
pub(crate) fn parse_cell_number(text: &str) -> Option<f64> {
    let mut t = text.trim();
    let mut negative = false;
    if let Some(inner) = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        t = inner.trim();
        negative = true;
    }
    for sign in ['-', '−', '▲', '△'] {
        if let Some(rest) = t.strip_prefix(sign) {
            t = rest.trim();
            negative = true;
        }
    }
    for symbol in ["$", "¥", "￥", "€", "£"] {
        t = t.strip_prefix(symbol).unwrap_or(t).trim();
    }
    t = t.strip_suffix('円').unwrap_or(t).trim();
    let v = parse_number(t)?;
    Some(if negative { -v } else { v })
}

fn english_multiplier(word: &str) -> f64 {
    match word.trim().to_ascii_lowercase().as_str() {
        "thousand" | "k" => 1e3,
        "million" | "mn" | "m" => 1e6,
        "billion" | "bn" | "b" => 1e9,
        "trillion" => 1e12,
        _ => 1.0,
    }
}

fn cjk_multiplier(chars: &str) -> f64 {
    chars
        .chars()
        .map(|c| match c {
            '百' => 1e2,
            '千' => 1e3,
            '万' => 1e4,
            '億' => 1e8,
            '兆' => 1e12,
            _ => 1.0,
        })
        .product()
}

fn symbol_currency(symbol: &str, language: &str) -> &'static str {
    match symbol {
        "$" | "US$" => "USD",
        "A$" | "AU$" => "AUD",
        "C$" | "CA$" => "CAD",
        "HK$" => "HKD",
        "S$" => "SGD",
        "NZ$" => "NZD",
        "R$" => "BRL",
        "€" => "EUR",
        "£" => "GBP",
        "¥" if language == "zh" => "CNY",
        "¥" => "JPY",
        "₩" | "원" | "ウォン" => "KRW",
        "₹" => "INR",
        "₽" => "RUB",
        "円" => "JPY",
        "元" | "块" | "人民币" | "人民幣" | "RMB" => "CNY",
        "ドル" | "米ドル" => "USD",
        "ユーロ" => "EUR",
        "ポンド" => "GBP",
        _ => "",
    }
}

fn code_currency(code: &str) -> Option<String> {
    let upper = code.to_ascii_uppercase();
    match upper.as_str() {
        "RMB" => Some("CNY".into()),
        "DOLLAR" | "DOLLARS" => Some("USD".into()),
        "EURO" | "EUROS" => Some("EUR".into()),
        "YEN" => Some("JPY".into()),
        _ if upper.len() == 3 => Some(upper),
        _ => None,
    }
}

/// Round away binary noise (`1.2 * 1e8`) and keep cents.
pub(crate) fn tidy(value: f64) -> f64 {
    let rounded = value.round();
    if (value - rounded).abs() < 1e-6 * value.abs().max(1.0) { rounded } else { (value * 1e6).round() / 1e6 }
}

struct Candidate {
    start: usize,
    end: usize,
    value: Option<f64>,
    currency: Option<String>,
}

fn sign(c: &regex::Captures, a: usize, b: usize) -> f64 {
    if c.get(a).is_some() || c.get(b).is_some() { -1.0 } else { 1.0 }
}

fn candidates(text: &str, language: &str) -> Vec<Candidate> {
    let bytes = text.as_bytes();
    let letter_before =
        |start: usize| start.checked_sub(1).and_then(|i| bytes.get(i)).is_some_and(|b| b.is_ascii_alphanumeric());
    let digit_before = |start: usize| {
        start.checked_sub(1).and_then(|i| bytes.get(i)).is_some_and(|b| b.is_ascii_digit() || *b == b'.' || *b == b',')
    };
    let mut out = Vec::new();
    for c in SYMBOL_PREFIX.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let currency = symbol_currency(&c[2], language);
        let value =
            parse_number(&c[4]).map(|v| v * sign(&c, 1, 3) * c.get(5).map_or(1.0, |x| english_multiplier(x.as_str())));
        out.push(Candidate {
            start: m.start(),
            end: m.end(),
            value,
            currency: (!currency.is_empty()).then(|| currency.to_string()),
        });
    }
    for c in CODE_PREFIX.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let code_start = c.get(2).map_or(m.start(), |x| x.start());
        if letter_before(code_start) {
            continue;
        }
        let value =
            parse_number(&c[4]).map(|v| v * sign(&c, 1, 3) * c.get(5).map_or(1.0, |x| english_multiplier(x.as_str())));
        out.push(Candidate { start: m.start(), end: m.end(), value, currency: code_currency(&c[2]) });
    }
    for c in CODE_SUFFIX.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let number_start = c.get(2).map_or(m.start(), |x| x.start());
        if digit_before(number_start) || letter_before(number_start) {
            continue;
        }
        let value =
            parse_number(&c[2]).map(|v| v * sign(&c, 1, 1) * c.get(3).map_or(1.0, |x| english_multiplier(x.as_str())));
        out.push(Candidate { start: m.start(), end: m.end(), value, currency: code_currency(&c[4]) });
    }
    for c in CJK_SUFFIX.captures_iter(text) {
        let Some(m) = c.get(0) else { continue };
        let number_start = c.get(2).map_or(m.start(), |x| x.start());
        if digit_before(number_start) || letter_before(number_start) {
            continue;
        }
        let mut total = 0.0;
        let mut any = false;
        for part in NUM_WITH_MULTIPLIER.captures_iter(&c[2]) {
            if let Some(v) = parse_number(&part[1]) {
                total += v * cjk_multiplier(&part[2]);
                any = true;
            }
        }
        let currency = symbol_currency(&c[3], language);
        out.push(Candidate {
            start: m.start(),
            end: m.end(),
            value: any.then_some(total * sign(&c, 1, 1)),
            currency: (!currency.is_empty()).then(|| currency.to_string()),
        });
    }
    out
}

/// Amounts written in `norm`'s text, in order, overlaps resolved (earliest, then longest).
pub(crate) fn extract(norm: &NormText, language: &str) -> Vec<AmountHit> {
    let mut all = candidates(&norm.text, language);
    all.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out = Vec::new();
    let mut covered_until = 0;
    for c in all {
        if c.start < covered_until {
            continue;
        }
        covered_until = c.end;
        let text = norm.original(c.start, c.end).trim().to_string();
        if !text.is_empty() {
            out.push(AmountHit {
                text,
                value: c.value.map(tidy),
                currency: c.currency,
                start: norm.original_offset(c.start),
            });
        }
    }
    out
}

/// Whether a cell or field value contains a written amount (so column logic leaves it alone).
pub(crate) fn has_written_amount(text: &str) -> bool {
    let norm = super::script::normalize(text);
    !candidates(&norm, "").is_empty()
}

/// What a column header or field name says about money: the currency (when stated or implied)
/// and the multiplier (`千円` = 1000).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MoneyUnit {
    pub currency: Option<String>,
    pub multiplier: f64,
}

static UNIT_IN_BRACKETS: LazyLock<Regex> =
    LazyLock::new(|| re(r"[(\[]\s*(?:単位\s*[:：]?\s*)?([^()\[\]]{1,20}?)\s*[)\]]"));

/// Japanese amount words: a number in such a column is money, in yen unless stated otherwise.
const JA_AMOUNT_WORDS: &[&str] = &[
    "金額",
    "料金",
    "代金",
    "価格",
    "単価",
    "売上",
    "費用",
    "請求額",
    "支払額",
    "税額",
    "小計",
    "合計額",
    "予算",
    "費",
    "原価",
    "給与",
    "報酬",
    "残高",
    "入金",
    "出金",
    "売価",
    "仕入",
];
const EN_AMOUNT_WORDS: &[&str] = &[
    "amount", "price", "cost", "fee", "revenue", "payment", "balance", "subtotal", "charge", "salary", "budget",
    "expense",
];
/// What makes a column a count, ratio, date or identifier even when an amount word is present
/// (`売上数`, `Price date`): substrings for CJK, whole words for English.
const NOT_MONEY_CJK: &[&str] = &["%", "率", "数", "個", "比", "日", "番号"];
const NOT_MONEY_WORDS: &[&str] =
    &["count", "qty", "quantity", "rate", "ratio", "number", "no", "id", "date", "percent", "pct"];

fn unit_of(text: &str) -> Option<MoneyUnit> {
    let t = text.trim().to_lowercase();
    let t = t.replace(' ', "");
    let unit = |c: &str, m: f64| Some(MoneyUnit { currency: Some(c.to_string()), multiplier: m });
    match t.as_str() {
        "円" | "¥" | "jpy" | "yen" => unit("JPY", 1.0),
        "千円" => unit("JPY", 1e3),
        "万円" => unit("JPY", 1e4),
        "百万円" => unit("JPY", 1e6),
        "億円" => unit("JPY", 1e8),
        "$" | "usd" | "us$" | "dollars" | "ドル" | "米ドル" => unit("USD", 1.0),
        "千ドル" | "$000" | "$'000" | "usd'000" | "usd000" | "$k" | "k$" | "usdk" | "thousandusd" | "usdthousands"
        | "usdthousand" => unit("USD", 1e3),
        "$m" | "usdm" | "usdmillions" | "millionusd" | "usdmillion" => unit("USD", 1e6),
        "€" | "eur" | "euro" | "euros" | "ユーロ" => unit("EUR", 1.0),
        "€000" | "eur'000" | "eurk" | "€k" => unit("EUR", 1e3),
        "£" | "gbp" | "ポンド" => unit("GBP", 1.0),
        "元" | "cny" | "rmb" | "人民币" | "人民幣" => unit("CNY", 1.0),
        "千元" => unit("CNY", 1e3),
        "万元" => unit("CNY", 1e4),
        _ if t.len() == 3 && CODES.split('|').any(|c| c.eq_ignore_ascii_case(&t)) => {
            code_currency(&t).map(|c| MoneyUnit { currency: Some(c), multiplier: 1.0 })
        }
        _ => None,
    }
}

/// The money unit a header or field name states (`売上高(千円)`, `Amount (USD)`, `Price $`,
/// `金額（単位：円）`) or implies (`請求金額` → JPY, `Amount` → unknown currency).
pub(crate) fn money_unit(header: &str) -> Option<MoneyUnit> {
    let norm = super::script::normalize(header);
    if let Some(u) = UNIT_IN_BRACKETS.captures(&norm).and_then(|c| unit_of(&c[1])) {
        return Some(u);
    }
    // A trailing unit after a space or slash: `Amount USD`, `金額/円`.
    let trailing = norm.rsplit([' ', '/']).next().filter(|last| last.len() < norm.len());
    if let Some(u) = trailing.and_then(unit_of) {
        return Some(u);
    }
    let lower = norm.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
    if NOT_MONEY_CJK.iter().any(|w| lower.contains(w)) || NOT_MONEY_WORDS.iter().any(|w| words.contains(w)) {
        return None;
    }
    if JA_AMOUNT_WORDS.iter().any(|w| lower.contains(w)) || lower.ends_with('円') {
        return Some(MoneyUnit { currency: Some("JPY".into()), multiplier: 1.0 });
    }
    if EN_AMOUNT_WORDS.iter().any(|w| words.contains(w) || words.iter().any(|x| x.strip_suffix('s') == Some(w))) {
        return Some(MoneyUnit { currency: None, multiplier: 1.0 });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(text: &str, language: &str) -> Vec<(String, Option<f64>, Option<String>)> {
        extract(&NormText::new(text), language).into_iter().map(|a| (a.text, a.value, a.currency)).collect()
    }

    fn a(text: &str, value: f64, currency: &str) -> (String, Option<f64>, Option<String>) {
        (text.to_string(), Some(value), Some(currency.to_string()))
    }

    #[test]
    fn symbols_and_codes() {
        assert_eq!(
            amounts(
                "Total: $1,234.56, fee €12, tip £3.50, USD 1,000 and 250 EUR, EUR 5.000,00, $1.2 million, $5M, -$20",
                "en"
            ),
            vec![
                a("$1,234.56", 1234.56, "USD"),
                a("€12", 12.0, "EUR"),
                a("£3.50", 3.5, "GBP"),
                a("USD 1,000", 1000.0, "USD"),
                a("250 EUR", 250.0, "EUR"),
                a("EUR 5.000,00", 5000.0, "EUR"),
                a("$1.2 million", 1_200_000.0, "USD"),
                a("$5M", 5_000_000.0, "USD"),
                a("-$20", -20.0, "USD"),
            ]
        );
    }

    #[test]
    fn japanese_units_and_multipliers() {
        assert_eq!(
            amounts(
                "合計金額 ¥12,850（税込）、12,850円、1万2千円、1.2億円、12850千円、３億５０００万円、▲500円、100元、５０ドル",
                "ja"
            ),
            vec![
                a("¥12,850", 12850.0, "JPY"),
                a("12,850円", 12850.0, "JPY"),
                a("1万2千円", 12000.0, "JPY"),
                a("1.2億円", 120_000_000.0, "JPY"),
                a("12850千円", 12_850_000.0, "JPY"),
                a("３億５０００万円", 350_000_000.0, "JPY"),
                a("▲500円", -500.0, "JPY"),
                a("100元", 100.0, "CNY"),
                a("５０ドル", 50.0, "USD"),
            ]
        );
        assert_eq!(amounts("价格 ¥99", "zh"), vec![a("¥99", 99.0, "CNY")]);
        assert_eq!(amounts("人民币100元", "zh"), vec![a("人民币100元", 100.0, "CNY")]);
    }

    #[test]
    fn not_amounts() {
        assert!(amounts("INV-2026-001 has 3 items; version 1.2; USDX 5; call 555-1234", "en").is_empty());
        assert!(amounts("2026年4月30日", "ja").is_empty());
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_number("1,234.56"), Some(1234.56));
        assert_eq!(parse_number("5.000,00"), Some(5000.0));
        assert_eq!(parse_number("1.234.567"), Some(1_234_567.0));
        assert_eq!(parse_number("3.5"), Some(3.5));
        assert_eq!(parse_number("1,2,3"), Some(123.0));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_cell_number("(1,000)"), Some(-1000.0));
        assert_eq!(parse_cell_number("△500"), Some(-500.0));
        assert_eq!(parse_cell_number("¥12,850"), Some(12850.0));
        assert_eq!(parse_cell_number("2026-04-30"), None);
    }

    #[test]
    fn units_in_headers() {
        let jpy = |m: f64| Some(MoneyUnit { currency: Some("JPY".into()), multiplier: m });
        assert_eq!(money_unit("売上高(千円)"), jpy(1e3));
        assert_eq!(money_unit("売上高（千円）"), jpy(1e3));
        assert_eq!(money_unit("金額（単位：円）"), jpy(1.0));
        assert_eq!(money_unit("請求金額"), jpy(1.0));
        assert_eq!(money_unit("Amount (USD)"), Some(MoneyUnit { currency: Some("USD".into()), multiplier: 1.0 }));
        assert_eq!(money_unit("Amount USD").and_then(|u| u.currency), Some("USD".into()));
        assert_eq!(money_unit("Amount"), Some(MoneyUnit { currency: None, multiplier: 1.0 }));
        assert_eq!(money_unit("前年比(%)"), None);
        assert_eq!(money_unit("売上数"), None);
        assert_eq!(money_unit("計上日"), None);
        assert_eq!(money_unit("Name"), None);
        assert_eq!(money_unit("Paid amount"), Some(MoneyUnit { currency: None, multiplier: 1.0 }));
        assert_eq!(money_unit("人件費"), jpy(1.0));
    }
}
