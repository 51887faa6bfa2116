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
        UnitKind::Slide => "a presentation slide (title, text, tables, speaker notes)",
        UnitKind::Image => "an image (attached; read the text and figures in it)",
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
        attachments: Vec::new(),
    }
}

/// How much of a previous answer a repair request quotes: enough for any answer within the
/// usual token limits, without letting a runaway answer double the request's size.
pub const REPAIR_QUOTE_CHARS: usize = 16_000;

/// Build the one follow-up request that asks the model to correct an answer that could not be
/// used: the same system prompt and content as `original`, and an instruction that repeats the
/// task, lists `problems` and quotes `previous_answer` (cut at [`REPAIR_QUOTE_CHARS`]).
///
/// ```
/// # use beacon_llm::CompletionRequest;
/// let original = CompletionRequest {
///     system: "sys".into(), instruction: "Return JSON.".into(), content: "text".into(),
///     content_label: "page 1".into(), language: None, max_tokens: 100, temperature: 0.0, attachments: vec![],
/// };
/// let problems = vec!["/: missing required property 'summary'".to_string()];
/// let repair = beacon_pipeline::prompt::repair_request(&original, r#"{"title":"x"}"#, &problems);
/// assert!(repair.instruction.contains("missing required property 'summary'"));
/// assert_eq!((repair.system, repair.content), (original.system, original.content));
/// ```
pub fn repair_request(original: &CompletionRequest, previous_answer: &str, problems: &[String]) -> CompletionRequest {
    let problems = problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n");
    let quoted = match previous_answer.char_indices().nth(REPAIR_QUOTE_CHARS) {
        Some((end, _)) => format!("{}\n(cut after {REPAIR_QUOTE_CHARS} characters)", &previous_answer[..end]),
        None => previous_answer.to_string(),
    };
    let instruction = format!(
        "{task}\n\n\
Your previous answer to this task could not be used:\n{problems}\n\n\
Your previous answer was:\n<previous_answer>\n{quoted}\n</previous_answer>\n\n\
Answer again with the corrected JSON object only: one object that follows the schema above, \
no prose and no code fences. Keep only values supported by the content below.",
        task = original.instruction,
    );
    CompletionRequest { instruction, ..original.clone() }
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

    #[test]
    fn repair_request_quotes_the_problems_and_the_answer_and_keeps_the_content() {
        let unit = Unit {
            index: 2,
            kind: UnitKind::Page,
            title: "page 3".into(),
            text: "Total: 10 EUR".into(),
            table: None,
            flags: vec![],
        };
        let schema = crate::schema::default_unit_schema();
        let original = unit_request(&unit, Some("en"), &schema, &LlmConfig::default());
        let problems = vec!["/: missing required property 'summary'".to_string(), "/headings: expected array".into()];
        let repair = repair_request(&original, "{\"title\": \"t\"}", &problems);
        assert!(repair.instruction.starts_with(&original.instruction), "the task and schema are repeated");
        assert!(repair.instruction.contains("- /: missing required property 'summary'\n- /headings: expected array"));
        assert!(repair.instruction.contains("<previous_answer>\n{\"title\": \"t\"}\n</previous_answer>"));
        assert!(repair.instruction.contains("corrected JSON object only"));
        assert_eq!(repair.system, original.system);
        assert_eq!((&repair.content, &repair.content_label), (&original.content, &original.content_label));
        assert_eq!((repair.max_tokens, repair.language.as_deref()), (original.max_tokens, Some("en")));

        let runaway = "é".repeat(REPAIR_QUOTE_CHARS + 5);
        let repair = repair_request(&original, &runaway, &problems);
        assert!(repair.instruction.contains(&format!("(cut after {REPAIR_QUOTE_CHARS} characters)")));
        assert!(!repair.instruction.contains(&runaway));
    }
}
