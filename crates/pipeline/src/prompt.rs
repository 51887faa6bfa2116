//! The prompts BEACON sends for one unit.

use beacon_ingest::{Unit, UnitKind};
use beacon_llm::CompletionRequest;

use crate::config::LlmConfig;

/// The system prompt: role and output rules.
pub const SYSTEM_PROMPT: &str = "You are BEACON, an analyst that turns one part of a business document \
into structured data. Answer with one JSON object only, no prose and no code fences. \
Use only information present in the content; never invent values. \
Write every text value in the same language as the content (for Japanese content, answer in Japanese).";

/// Build the request that analyses `unit`, asking for a result that follows `schema`.
pub fn unit_request(
    unit: &Unit,
    language: Option<&str>,
    schema: &serde_json::Value,
    llm: &LlmConfig,
) -> CompletionRequest {
    let what = match unit.kind {
        UnitKind::Page => "a page of a document",
        UnitKind::Sheet => "a spreadsheet sheet (as a Markdown table)",
        UnitKind::Rows => "a range of rows of a table (as a Markdown table)",
        UnitKind::Section => "a section of a text document",
    };
    let language_rule = match language {
        Some(code) => format!("The document's language is '{code}'; write text values in that language."),
        None => "Write text values in the content's language.".to_string(),
    };
    let instruction = format!(
        "Analyse the content below, which is {what} titled \"{title}\". \
Return one JSON object that follows this JSON Schema:\n{schema}\n\
Give a short summary (1-3 sentences), the headings, up to 5 key points, key-value fields, \
dates (with ISO 8601 form when resolvable), monetary amounts (value and ISO 4217 currency) and \
tables (columns and row count). {language_rule}",
        title = unit.title,
        schema = serde_json::to_string(schema).unwrap_or_default(),
    );
    CompletionRequest {
        system: SYSTEM_PROMPT.to_string(),
        instruction,
        content: unit.text.clone(),
        content_label: unit.title.clone(),
        language: language.map(str::to_string),
        max_tokens: llm.max_tokens,
        temperature: llm.temperature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_unit_text_language_and_schema() {
        let unit = Unit {
            index: 0,
            kind: UnitKind::Sheet,
            title: "売上".into(),
            text: "| 月 | 売上高 |".into(),
            table: None,
            flags: vec![],
        };
        let schema = crate::schema::default_unit_schema();
        let r = unit_request(&unit, Some("ja"), &schema, &LlmConfig::default());
        assert_eq!(r.content, "| 月 | 売上高 |");
        assert_eq!(r.content_label, "売上");
        assert!(r.instruction.contains("\"required\":[\"summary\"]"));
        assert!(r.instruction.contains("'ja'"));
        assert_eq!(r.max_tokens, 2048);
    }
}
