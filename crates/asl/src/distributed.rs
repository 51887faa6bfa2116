//! The Distributed Map's `ItemReader`, `ItemBatcher` and `ResultWriter`: their definitions, and
//! the item parsing, batching and result files, which need no interpreter.
//!
//! Formats follow the AWS developer guide ("ItemReader (Map)", "ItemBatcher (Map)",
//! "ResultWriter (Map)"): CSV rows become objects of strings keyed by the header row or the
//! given headers, a JSON file must hold an array, JSONL holds one value per line, and
//! `listObjectsV2` yields one object description per key.

use serde_json::{Map, Value, json};

use crate::definition::{Fields, Problems, Setting, escape_pointer};
use crate::json::to_compact;
use crate::payload::PayloadTemplate;
use crate::storage::ObjectInfo;

/// Most items an `ItemReader` reads: AWS stops at 100,000,000.
pub(crate) const MAX_ITEMS_LIMIT: u64 = 100_000_000;
/// Longest `Label`.
const MAX_LABEL_CHARS: usize = 40;

/// Where the items come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReaderSource {
    /// `arn:aws:states:::s3:getObject`: one object, parsed as `InputType` says.
    GetObject,
    /// `arn:aws:states:::s3:listObjectsV2`: the objects under a prefix.
    ListObjectsV2,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CsvHeaders {
    FirstRow,
    Given(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemFormat {
    Json,
    Jsonl,
    Csv { headers: CsvHeaders, delimiter: char },
}

#[derive(Debug)]
pub(crate) struct ItemReader {
    pub(crate) source: ReaderSource,
    /// `Bucket` and `Key` (getObject) or `Bucket` and `Prefix` (listObjectsV2).
    pub(crate) parameters: Option<PayloadTemplate>,
    pub(crate) format: ItemFormat,
    /// `ReaderConfig.MaxItems` or `MaxItemsPath`.
    pub(crate) max_items: Option<Setting<Value>>,
}

#[derive(Debug)]
pub(crate) struct ItemBatcher {
    pub(crate) max_items: Option<Setting<Value>>,
    pub(crate) max_bytes: Option<Setting<Value>>,
    pub(crate) batch_input: Option<PayloadTemplate>,
}

#[derive(Debug)]
pub(crate) struct ResultWriter {
    /// `Bucket` and optionally `Prefix`.
    pub(crate) parameters: PayloadTemplate,
}

fn object<'a>(v: &'a Value, pointer: &str, what: &str, problems: &mut Problems) -> Option<&'a Map<String, Value>> {
    let obj = v.as_object();
    if obj.is_none() {
        problems.push(pointer, format!("'{what}' must be an object"));
    }
    obj
}

fn unknown_fields(obj: &Map<String, Value>, allowed: &[&str], pointer: &str, what: &str, problems: &mut Problems) {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.push(format!("{pointer}/{}", escape_pointer(key)), format!("unknown field '{key}' in '{what}'"));
        }
    }
}

pub(crate) fn compile_item_reader(v: &Value, pointer: &str, problems: &mut Problems) -> Option<ItemReader> {
    let obj = object(v, pointer, "ItemReader", problems)?;
    unknown_fields(obj, &["Resource", "Parameters", "ReaderConfig"], pointer, "ItemReader", problems);
    let source = match obj.get("Resource").and_then(Value::as_str) {
        Some("arn:aws:states:::s3:getObject") => ReaderSource::GetObject,
        Some("arn:aws:states:::s3:listObjectsV2") => ReaderSource::ListObjectsV2,
        _ => {
            problems.push(
                format!("{pointer}/Resource"),
                "'Resource' must be \"arn:aws:states:::s3:getObject\" or \"arn:aws:states:::s3:listObjectsV2\"",
            );
            return None;
        }
    };
    let fields = Fields::new(obj, pointer);
    let parameters = fields.template("Parameters", problems);
    let config_ptr = format!("{pointer}/ReaderConfig");
    let empty = Map::new();
    let config = match obj.get("ReaderConfig") {
        None => &empty,
        Some(c) => object(c, &config_ptr, "ReaderConfig", problems)?,
    };
    unknown_fields(
        config,
        &["InputType", "CSVHeaderLocation", "CSVHeaders", "CSVDelimiter", "MaxItems", "MaxItemsPath"],
        &config_ptr,
        "ReaderConfig",
        problems,
    );
    let config_fields = Fields::new(config, &config_ptr);
    let max_items = config_fields.setting_value(
        "MaxItems",
        "MaxItemsPath",
        |v| v.as_u64().is_some_and(|n| n <= MAX_ITEMS_LIMIT),
        "an integer from 0 to 100000000",
        problems,
    );
    let format = match (source, config.get("InputType").and_then(Value::as_str)) {
        (ReaderSource::ListObjectsV2, None) => ItemFormat::Json,
        (ReaderSource::ListObjectsV2, Some(_)) => {
            problems.push(format!("{config_ptr}/InputType"), "'InputType' does not apply to listObjectsV2");
            ItemFormat::Json
        }
        (ReaderSource::GetObject, Some("JSON")) => ItemFormat::Json,
        (ReaderSource::GetObject, Some("JSONL")) => ItemFormat::Jsonl,
        (ReaderSource::GetObject, Some("CSV")) => {
            let headers = match (config.get("CSVHeaderLocation").and_then(Value::as_str), config.get("CSVHeaders")) {
                (None | Some("FIRST_ROW"), None) => CsvHeaders::FirstRow,
                (Some("GIVEN"), Some(Value::Array(names)))
                    if names.iter().all(Value::is_string) && !names.is_empty() =>
                {
                    CsvHeaders::Given(names.iter().filter_map(Value::as_str).map(str::to_string).collect())
                }
                (Some("GIVEN"), _) => {
                    problems.push(
                        format!("{config_ptr}/CSVHeaders"),
                        "with CSVHeaderLocation GIVEN, 'CSVHeaders' must be a non-empty array of strings",
                    );
                    CsvHeaders::FirstRow
                }
                (None | Some("FIRST_ROW"), Some(_)) => {
                    problems.push(
                        format!("{config_ptr}/CSVHeaders"),
                        "'CSVHeaders' requires \"CSVHeaderLocation\": \"GIVEN\"",
                    );
                    CsvHeaders::FirstRow
                }
                (Some(_), _) => {
                    problems.push(
                        format!("{config_ptr}/CSVHeaderLocation"),
                        "'CSVHeaderLocation' must be \"FIRST_ROW\" or \"GIVEN\"",
                    );
                    CsvHeaders::FirstRow
                }
            };
            let delimiter = match config.get("CSVDelimiter").and_then(Value::as_str) {
                None | Some("COMMA") => ',',
                Some("PIPE") => '|',
                Some("SEMICOLON") => ';',
                Some("SPACE") => ' ',
                Some("TAB") => '\t',
                Some(_) => {
                    problems.push(
                        format!("{config_ptr}/CSVDelimiter"),
                        "'CSVDelimiter' must be COMMA, PIPE, SEMICOLON, SPACE or TAB",
                    );
                    ','
                }
            };
            ItemFormat::Csv { headers, delimiter }
        }
        (ReaderSource::GetObject, Some(other)) => {
            problems.push(
                format!("{config_ptr}/InputType"),
                format!("InputType '{other}' is not supported; use JSON, JSONL or CSV"),
            );
            ItemFormat::Json
        }
        (ReaderSource::GetObject, None) => {
            problems.push(&config_ptr, "an s3:getObject ItemReader needs 'ReaderConfig' with 'InputType'");
            ItemFormat::Json
        }
    };
    Some(ItemReader { source, parameters, format, max_items })
}

pub(crate) fn compile_item_batcher(v: &Value, pointer: &str, problems: &mut Problems) -> Option<ItemBatcher> {
    let obj = object(v, pointer, "ItemBatcher", problems)?;
    unknown_fields(
        obj,
        &[
            "MaxItemsPerBatch",
            "MaxItemsPerBatchPath",
            "MaxInputBytesPerBatch",
            "MaxInputBytesPerBatchPath",
            "BatchInput",
        ],
        pointer,
        "ItemBatcher",
        problems,
    );
    let fields = Fields::new(obj, pointer);
    let max_items = fields.setting_value(
        "MaxItemsPerBatch",
        "MaxItemsPerBatchPath",
        |v| v.as_u64().is_some_and(|n| n > 0),
        "a positive integer",
        problems,
    );
    let max_bytes = fields.setting_value(
        "MaxInputBytesPerBatch",
        "MaxInputBytesPerBatchPath",
        |v| v.as_u64().is_some_and(|n| n > 0 && n <= 256 * 1024),
        "a positive integer of at most 262144",
        problems,
    );
    if max_items.is_none() && max_bytes.is_none() {
        problems
            .push(pointer, "an ItemBatcher needs MaxItemsPerBatch or MaxInputBytesPerBatch (or their ...Path forms)");
    }
    let batch_input = fields.template("BatchInput", problems);
    Some(ItemBatcher { max_items, max_bytes, batch_input })
}

pub(crate) fn compile_result_writer(v: &Value, pointer: &str, problems: &mut Problems) -> Option<ResultWriter> {
    let obj = object(v, pointer, "ResultWriter", problems)?;
    unknown_fields(obj, &["Resource", "Parameters"], pointer, "ResultWriter", problems);
    if obj.get("Resource").and_then(Value::as_str) != Some("arn:aws:states:::s3:putObject") {
        problems.push(format!("{pointer}/Resource"), "'Resource' must be \"arn:aws:states:::s3:putObject\"");
    }
    let Some(parameters) = Fields::new(obj, pointer).template("Parameters", problems) else {
        problems.push(pointer, "a ResultWriter needs 'Parameters' with 'Bucket' (and optionally 'Prefix')");
        return None;
    };
    Some(ResultWriter { parameters })
}

/// A Map's `Label`: up to 40 characters, none of which AWS reserves in ARNs.
pub(crate) fn check_label(v: &Value, pointer: &str, problems: &mut Problems) -> Option<String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars().count() <= MAX_LABEL_CHARS
            && !s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
    };
    match v.as_str() {
        Some(s) if valid(s) => Some(s.to_string()),
        _ => {
            problems.push(
                pointer,
                "'Label' must be 1 to 40 characters without whitespace or any of <>{}[]?*\"#%\\^|~`$&,;:/",
            );
            None
        }
    }
}

/// Turns the bytes of an object into items.
pub(crate) fn parse_items(bytes: &[u8], format: &ItemFormat, max_items: usize) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "The object is not UTF-8 text.".to_string())?;
    let mut items = match format {
        ItemFormat::Json => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items,
            Ok(_) => return Err("Attempting to map over non-iterable node.".to_string()),
            Err(e) => return Err(format!("The object is not valid JSON: {e}")),
        },
        ItemFormat::Jsonl => {
            let mut items = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                items.push(serde_json::from_str(line).map_err(|e| format!("Line {} is not valid JSON: {e}", i + 1))?);
                if items.len() >= max_items {
                    break;
                }
            }
            items
        }
        ItemFormat::Csv { headers, delimiter } => csv_items(text, headers, *delimiter, max_items)?,
    };
    items.truncate(max_items);
    Ok(items)
}

fn csv_items(text: &str, headers: &CsvHeaders, delimiter: char, max_items: usize) -> Result<Vec<Value>, String> {
    let mut rows = parse_csv(text, delimiter).into_iter();
    let headers = match headers {
        CsvHeaders::Given(names) => names.clone(),
        CsvHeaders::FirstRow => rows.next().unwrap_or_default(),
    };
    let mut seen = std::collections::HashSet::new();
    if !headers.iter().all(|h| seen.insert(h)) {
        return Err("CSV headers cannot contain duplicates.".to_string());
    }
    // Each row becomes an object of strings: missing fields are "", extra fields are dropped.
    Ok(rows
        .take(max_items)
        .map(|row| {
            let mut item = Map::new();
            for (i, name) in headers.iter().enumerate() {
                item.insert(name.clone(), Value::String(row.get(i).cloned().unwrap_or_default()));
            }
            Value::Object(item)
        })
        .collect())
}

/// Splits CSV text into rows of fields (RFC 4180: `"` quotes a field, `""` is a quote inside
/// one; LF or CRLF ends a row). Empty lines are skipped.
pub(crate) fn parse_csv(text: &str, delimiter: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut row_started = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                quoted = true;
                row_started = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if row_started {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                row_started = false;
            }
            c if c == delimiter => {
                row.push(std::mem::take(&mut field));
                row_started = true;
            }
            other => {
                field.push(other);
                row_started = true;
            }
        }
    }
    if row_started {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// The items of a `listObjectsV2` reader, as AWS describes each object.
pub(crate) fn object_items(objects: Vec<ObjectInfo>, max_items: usize) -> Vec<Value> {
    objects
        .into_iter()
        .take(max_items)
        .map(|o| {
            json!({
                "Etag": o.etag,
                "Key": o.key,
                "LastModified": o.last_modified.timestamp(),
                "Size": o.size,
                "StorageClass": "STANDARD",
            })
        })
        .collect()
}

/// Groups items into batches of at most `max_items` items and `max_bytes` bytes (of the
/// batch's JSON text); each batch is `{"BatchInput": ..., "Items": [...]}`. An item too large
/// for `max_bytes` on its own makes a batch by itself.
pub(crate) fn batches(
    items: Vec<Value>,
    max_items: Option<usize>,
    max_bytes: Option<usize>,
    batch_input: Option<&Value>,
) -> Vec<Value> {
    let make = |items: Vec<Value>| {
        let mut batch = Map::new();
        if let Some(input) = batch_input {
            batch.insert("BatchInput".to_string(), input.clone());
        }
        batch.insert("Items".to_string(), Value::Array(items));
        Value::Object(batch)
    };
    let empty_size = to_compact(&make(Vec::new())).len();
    let mut out = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut size = empty_size;
    for item in items {
        // An item adds its text, and a comma unless it is the first.
        let item_len = to_compact(&item).len();
        let full_by_count = max_items.is_some_and(|m| current.len() >= m);
        let full_by_bytes = max_bytes.is_some_and(|m| !current.is_empty() && size + item_len + 1 > m);
        if full_by_count || full_by_bytes {
            out.push(make(std::mem::take(&mut current)));
            size = empty_size;
        }
        size += item_len + usize::from(!current.is_empty());
        current.push(item);
    }
    if !current.is_empty() {
        out.push(make(current));
    }
    out
}

/// What a ResultWriter reports of one child execution.
#[derive(Debug, Clone)]
pub(crate) struct ChildRecord {
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) input: Value,
    pub(crate) start: String,
    pub(crate) stop: String,
    /// The output, or the error and cause.
    pub(crate) outcome: Result<Value, (String, String)>,
}

/// The objects a ResultWriter writes under `dir` (`Prefix/MapRunId`): `SUCCEEDED_0.json` and
/// `FAILED_0.json` for the children that ended so (when there are any) and `manifest.json`
/// listing them. Returns `(key, bytes)` pairs, the manifest last.
pub(crate) fn result_files(
    records: &[ChildRecord],
    dir: &str,
    bucket: &str,
    map_run_arn: &str,
    state_machine_arn: &str,
) -> Vec<(String, Vec<u8>)> {
    let entry = |r: &ChildRecord| {
        let mut e = json!({
            "ExecutionArn": r.arn,
            "Input": to_compact(&r.input),
            "InputDetails": {"Included": true},
            "Name": r.name,
            "RedriveCount": 0,
            "StartDate": r.start,
            "StateMachineArn": state_machine_arn,
            "StopDate": r.stop,
        });
        match &r.outcome {
            Ok(output) => {
                e["Output"] = Value::String(to_compact(output));
                e["OutputDetails"] = json!({"Included": true});
                e["RedriveStatus"] = json!("NOT_REDRIVABLE");
                e["RedriveStatusReason"] = json!("Execution is SUCCEEDED and cannot be redriven");
                e["Status"] = json!("SUCCEEDED");
            }
            Err((error, cause)) => {
                e["Error"] = Value::String(error.clone());
                e["Cause"] = Value::String(cause.clone());
                e["RedriveStatus"] = json!("REDRIVABLE");
                e["Status"] = json!("FAILED");
            }
        }
        e
    };
    let mut files = Vec::new();
    let mut listed = Map::new();
    for (status, ok) in [("FAILED", false), ("PENDING", false), ("SUCCEEDED", true)] {
        let entries: Vec<Value> = if status == "PENDING" {
            Vec::new()
        } else {
            records.iter().filter(|r| r.outcome.is_ok() == ok).map(entry).collect()
        };
        let mut list = Vec::new();
        if !entries.is_empty() {
            let key = format!("{dir}/{status}_0.json");
            let bytes = to_compact(&Value::Array(entries)).into_bytes();
            list.push(json!({"Key": key, "Size": bytes.len()}));
            files.push((key, bytes));
        }
        listed.insert(status.to_string(), Value::Array(list));
    }
    let manifest = json!({
        "DestinationBucket": bucket,
        "MapRunArn": map_run_arn,
        "ResultFiles": listed,
    });
    files.push((format!("{dir}/manifest.json"), to_compact(&manifest).into_bytes()));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "Col1,Col2,Col3\nValue1,Value2,Value3\n,,,\ntrue,1,'HelloWorld'\nNull,None,\n   \n";

    #[test]
    fn csv_rows_become_objects_of_strings() {
        let items =
            parse_items(CSV.as_bytes(), &ItemFormat::Csv { headers: CsvHeaders::FirstRow, delimiter: ',' }, 100)
                .unwrap();
        assert_eq!(
            Value::Array(items),
            json!([
                {"Col1": "Value1", "Col2": "Value2", "Col3": "Value3"},
                {"Col1": "", "Col2": "", "Col3": ""},
                {"Col1": "true", "Col2": "1", "Col3": "'HelloWorld'"},
                {"Col1": "Null", "Col2": "None", "Col3": ""},
                {"Col1": "   ", "Col2": "", "Col3": ""}
            ])
        );
        let given = ItemFormat::Csv { headers: CsvHeaders::Given(vec!["H1".into()]), delimiter: ',' };
        assert_eq!(parse_items(b"a,b\nc,d\n", &given, 1).unwrap(), vec![json!({"H1": "a"})]);
        let dup = ItemFormat::Csv { headers: CsvHeaders::Given(vec!["H".into(), "H".into()]), delimiter: ',' };
        assert_eq!(parse_items(b"a,b\n", &dup, 5).unwrap_err(), "CSV headers cannot contain duplicates.");
    }

    #[test]
    fn csv_quotes_and_delimiters() {
        assert_eq!(
            parse_csv("a;\"b;c\";\"say \"\"hi\"\"\"\r\n\r\nx;\"multi\nline\"\n", ';'),
            vec![vec!["a", "b;c", "say \"hi\""], vec!["x", "multi\nline"]]
        );
        assert_eq!(parse_csv("last,row", ','), vec![vec!["last", "row"]]);
    }

    #[test]
    fn json_and_jsonl() {
        assert_eq!(parse_items(b"[1,2,3]", &ItemFormat::Json, 2).unwrap(), vec![json!(1), json!(2)]);
        assert_eq!(
            parse_items(b"{\"Hello\":\"world\"}", &ItemFormat::Json, 10).unwrap_err(),
            "Attempting to map over non-iterable node."
        );
        assert_eq!(
            parse_items(b"{\"a\":1}\n\n[2]\n\"x\"\n", &ItemFormat::Jsonl, 10).unwrap(),
            vec![json!({"a": 1}), json!([2]), json!("x")]
        );
        assert!(parse_items(b"{\"a\":1}\nnope\n", &ItemFormat::Jsonl, 10).unwrap_err().contains("Line 2"));
    }

    #[test]
    fn batching_by_count_and_bytes() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        assert_eq!(
            batches(items.clone(), Some(2), None, Some(&json!({"k": 1}))),
            vec![
                json!({"BatchInput": {"k": 1}, "Items": [0, 1]}),
                json!({"BatchInput": {"k": 1}, "Items": [2, 3]}),
                json!({"BatchInput": {"k": 1}, "Items": [4]})
            ]
        );
        // {"Items":[0,1]} is 15 bytes.
        assert_eq!(
            batches(items, None, Some(15), None),
            vec![json!({"Items": [0, 1]}), json!({"Items": [2, 3]}), json!({"Items": [4]})]
        );
        assert_eq!(batches(vec![json!("big")], None, Some(3), None), vec![json!({"Items": ["big"]})]);
    }

    #[test]
    fn result_files_and_manifest() {
        let records = vec![
            ChildRecord {
                name: "c0".into(),
                arn: "arn:c0".into(),
                input: json!(1),
                start: "t0".into(),
                stop: "t1".into(),
                outcome: Ok(json!(2)),
            },
            ChildRecord {
                name: "c1".into(),
                arn: "arn:c1".into(),
                input: json!(3),
                start: "t0".into(),
                stop: "t1".into(),
                outcome: Err(("E".into(), "C".into())),
            },
        ];
        let files = result_files(&records, "jobs/run1", "b", "arn:run", "arn:sm");
        let keys: Vec<&str> = files.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["jobs/run1/FAILED_0.json", "jobs/run1/SUCCEEDED_0.json", "jobs/run1/manifest.json"]);
        let manifest: Value = serde_json::from_slice(&files[2].1).unwrap();
        assert_eq!(manifest["DestinationBucket"], json!("b"));
        assert_eq!(manifest["ResultFiles"]["PENDING"], json!([]));
        assert_eq!(manifest["ResultFiles"]["SUCCEEDED"][0]["Key"], json!("jobs/run1/SUCCEEDED_0.json"));
        let succeeded: Value = serde_json::from_slice(&files[1].1).unwrap();
        assert_eq!(succeeded[0]["Output"], json!("2"));
        assert_eq!(succeeded[0]["Status"], json!("SUCCEEDED"));
        let failed: Value = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(failed[0]["Error"], json!("E"));
    }
}
