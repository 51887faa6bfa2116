//! Intrinsic functions (`States.Format(...)` and friends) in payload templates.
//!
//! A call is parsed once, when the definition is validated, into an [`IntrinsicCall`]; evaluating
//! it against the effective input and the context object happens per state run. Supported:
//! `States.Format`, `States.StringToJson`, `States.JsonToString`, `States.Array`,
//! `States.ArrayPartition`, `States.ArrayContains`, `States.ArrayRange`, `States.ArrayGetItem`,
//! `States.ArrayLength`, `States.ArrayUnique`, `States.Base64Encode`, `States.Base64Decode`,
//! `States.Hash`, `States.JsonMerge`, `States.MathRandom`, `States.MathAdd`, `States.StringSplit`,
//! `States.UUID`.

use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

use crate::json::{as_integer, json_equal, to_compact, type_name};
use crate::path::{PathError, Sources, ValuePath};
use crate::variables::Variables;

/// Why an intrinsic function could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrinsicError {
    /// The text is not a well-formed call.
    #[error("invalid intrinsic function '{text}': {reason}")]
    Syntax {
        /// The call as written.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A path argument selected nothing.
    #[error("the path '{path}' in an intrinsic function argument selected nothing: {source}")]
    PathNotFound {
        /// The path argument.
        path: String,
        /// The path evaluation error.
        source: PathError,
    },
    /// The arguments have the wrong type or value for the function.
    #[error("{function}: {reason}")]
    Invalid {
        /// The function, e.g. `States.ArrayGetItem`.
        function: &'static str,
        /// What is wrong with the arguments.
        reason: String,
    },
}

/// The functions this interpreter knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Function {
    fn from_name(name: &str) -> Option<Function> {
        Some(match name {
            "States.Format" => Function::Format,
            "States.StringToJson" => Function::StringToJson,
            "States.JsonToString" => Function::JsonToString,
            "States.Array" => Function::Array,
            "States.ArrayPartition" => Function::ArrayPartition,
            "States.ArrayContains" => Function::ArrayContains,
            "States.ArrayRange" => Function::ArrayRange,
            "States.ArrayGetItem" => Function::ArrayGetItem,
            "States.ArrayLength" => Function::ArrayLength,
            "States.ArrayUnique" => Function::ArrayUnique,
            "States.Base64Encode" => Function::Base64Encode,
            "States.Base64Decode" => Function::Base64Decode,
            "States.Hash" => Function::Hash,
            "States.JsonMerge" => Function::JsonMerge,
            "States.MathRandom" => Function::MathRandom,
            "States.MathAdd" => Function::MathAdd,
            "States.StringSplit" => Function::StringSplit,
            "States.UUID" => Function::Uuid,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Function::Format => "States.Format",
            Function::StringToJson => "States.StringToJson",
            Function::JsonToString => "States.JsonToString",
            Function::Array => "States.Array",
            Function::ArrayPartition => "States.ArrayPartition",
            Function::ArrayContains => "States.ArrayContains",
            Function::ArrayRange => "States.ArrayRange",
            Function::ArrayGetItem => "States.ArrayGetItem",
            Function::ArrayLength => "States.ArrayLength",
            Function::ArrayUnique => "States.ArrayUnique",
            Function::Base64Encode => "States.Base64Encode",
            Function::Base64Decode => "States.Base64Decode",
            Function::Hash => "States.Hash",
            Function::JsonMerge => "States.JsonMerge",
            Function::MathRandom => "States.MathRandom",
            Function::MathAdd => "States.MathAdd",
            Function::StringSplit => "States.StringSplit",
            Function::Uuid => "States.UUID",
        }
    }

    /// Allowed argument counts (inclusive range).
    fn arity(self) -> (usize, usize) {
        match self {
            Function::Format => (1, usize::MAX),
            Function::Array => (0, usize::MAX),
            Function::StringToJson
            | Function::JsonToString
            | Function::ArrayLength
            | Function::ArrayUnique
            | Function::Base64Encode
            | Function::Base64Decode => (1, 1),
            Function::ArrayPartition
            | Function::ArrayContains
            | Function::ArrayGetItem
            | Function::Hash
            | Function::MathAdd
            | Function::StringSplit => (2, 2),
            Function::ArrayRange | Function::JsonMerge => (3, 3),
            Function::MathRandom => (2, 3),
            Function::Uuid => (0, 0),
        }
    }
}

/// One argument of a call.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// A quoted string; `raw` keeps the escapes, which `States.Format` needs to tell `\{` from `{`.
    Str {
        value: String,
        raw: String,
    },
    Literal(Value),
    Path(ValuePath),
    Call(Box<IntrinsicCall>),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrinsicCall {
    function: Function,
    args: Vec<Arg>,
    text: String,
}

impl IntrinsicCall {
    /// True when `text` looks like an intrinsic call rather than a path.
    pub fn looks_like_call(text: &str) -> bool {
        text.trim_start().starts_with("States.")
    }

    /// Parses a call such as `States.Format('Hello, {}', $.name)`.
    pub fn parse(text: &str) -> Result<IntrinsicCall, IntrinsicError> {
        let mut p = CallParser { text, chars: text.chars().collect(), pos: 0 };
        p.skip_ws();
        let call = p.parse_call()?;
        p.skip_ws();
        if p.pos != p.chars.len() {
            return p.err("unexpected text after the closing ')'");
        }
        Ok(call)
    }

    /// The call as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates the call; `input` is what `$` refers to, `context` what `$$` refers to.
    pub fn evaluate(&self, input: &Value, context: &Value) -> Result<Value, IntrinsicError> {
        self.evaluate_in(&Sources::new(input, context, &Variables::default()))
    }

    /// Evaluates the call with workflow variables in scope.
    pub(crate) fn evaluate_in(&self, src: &Sources<'_>) -> Result<Value, IntrinsicError> {
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Str { value, .. } => Value::String(value.clone()),
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p
                    .select_in(src)
                    .map_err(|source| IntrinsicError::PathNotFound { path: p.as_str().to_string(), source })?,
                Arg::Call(c) => c.evaluate_in(src)?,
            });
        }
        let f = self.function;
        let invalid = |reason: String| IntrinsicError::Invalid { function: f.name(), reason };
        match f {
            Function::Format => self.format(&values).map_err(invalid),
            Function::StringToJson => {
                let s = want_str(&values[0], "the argument").map_err(invalid)?;
                let trimmed = s.trim();
                if trimmed.is_empty() {
                    // AWS answers null for "" and for whitespace.
                    return Ok(Value::Null);
                }
                serde_json::from_str(trimmed).map_err(|e| invalid(format!("the argument is not valid JSON: {e}")))
            }
            Function::JsonToString => Ok(Value::String(to_compact(&values[0]))),
            Function::Array => Ok(Value::Array(values)),
            Function::ArrayPartition => {
                let items = want_array(&values[0], "the first argument").map_err(invalid)?;
                let size = want_int(&values[1], "the chunk size").map_err(invalid)?;
                if size <= 0 {
                    return Err(invalid(format!("the chunk size must be positive, got {size}")));
                }
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                Ok(Value::Array(items.chunks(size).map(|c| Value::Array(c.to_vec())).collect()))
            }
            Function::ArrayContains => {
                let items = want_array(&values[0], "the first argument").map_err(invalid)?;
                Ok(Value::Bool(items.iter().any(|v| json_equal(v, &values[1]))))
            }
            Function::ArrayRange => {
                let start = want_int(&values[0], "the start").map_err(invalid)?;
                let end = want_int(&values[1], "the end").map_err(invalid)?;
                let step = want_int(&values[2], "the step").map_err(invalid)?;
                array_range(start, end, step).map_err(invalid)
            }
            Function::ArrayGetItem => {
                let items = want_array(&values[0], "the first argument").map_err(invalid)?;
                let index = want_int(&values[1], "the index").map_err(invalid)?;
                usize::try_from(index).ok().and_then(|i| items.get(i)).cloned().ok_or_else(|| {
                    invalid(format!("index {index} is out of bounds for an array of {} items", items.len()))
                })
            }
            Function::ArrayLength => {
                let items = want_array(&values[0], "the argument").map_err(invalid)?;
                Ok(Value::from(items.len()))
            }
            Function::ArrayUnique => {
                let items = want_array(&values[0], "the argument").map_err(invalid)?;
                let mut out: Vec<Value> = Vec::new();
                for item in items {
                    if !out.iter().any(|seen| json_equal(seen, item)) {
                        out.push(item.clone());
                    }
                }
                Ok(Value::Array(out))
            }
            Function::Base64Encode => {
                let s = want_str(&values[0], "the argument").map_err(invalid)?;
                Ok(Value::String(base64_encode(s.as_bytes())))
            }
            Function::Base64Decode => {
                let s = want_str(&values[0], "the argument").map_err(invalid)?;
                let bytes = base64_decode(s).map_err(invalid)?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| invalid("the decoded bytes are not UTF-8 text".to_string()))
            }
            Function::Hash => {
                let data = want_str(&values[0], "the data to hash").map_err(invalid)?;
                let algorithm = want_str(&values[1], "the hashing algorithm").map_err(invalid)?;
                hash(data, algorithm).map(Value::String).map_err(invalid)
            }
            Function::JsonMerge => {
                let (Value::Object(a), Value::Object(b)) = (&values[0], &values[1]) else {
                    return Err(invalid(format!(
                        "both arguments must be JSON objects, got {} and {}",
                        type_name(&values[0]),
                        type_name(&values[1])
                    )));
                };
                if values[2] != Value::Bool(false) {
                    return Err(invalid(
                        "only shallow merging is supported: the third argument must be false".to_string(),
                    ));
                }
                let mut merged: Map<String, Value> = a.clone();
                for (k, v) in b {
                    merged.insert(k.clone(), v.clone());
                }
                Ok(Value::Object(merged))
            }
            Function::MathRandom => {
                let start = want_int(&values[0], "the start").map_err(invalid)?;
                let end = want_int(&values[1], "the end").map_err(invalid)?;
                if start >= end {
                    return Err(invalid(format!("the start ({start}) must be less than the end ({end})")));
                }
                let n = match values.get(2) {
                    Some(seed) => {
                        let seed = want_int(seed, "the seed").map_err(invalid)?;
                        rand::rngs::StdRng::seed_from_u64(seed as u64).random_range(start..end)
                    }
                    None => rand::rng().random_range(start..end),
                };
                Ok(Value::from(n))
            }
            Function::MathAdd => {
                let a = want_int(&values[0], "the first argument").map_err(invalid)?;
                let b = want_int(&values[1], "the second argument").map_err(invalid)?;
                a.checked_add(b).map(Value::from).ok_or_else(|| invalid(format!("{a} + {b} overflows")))
            }
            Function::StringSplit => {
                let s = want_str(&values[0], "the first argument").map_err(invalid)?;
                let delims = want_str(&values[1], "the delimiter").map_err(invalid)?;
                // Every character of the second argument is a delimiter and empty pieces are
                // dropped, as with Java's StringTokenizer.
                let parts = s
                    .split(|c| delims.contains(c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect();
                Ok(Value::Array(parts))
            }
            Function::Uuid => Ok(Value::String(uuid_v4())),
        }
    }

    fn format(&self, values: &[Value]) -> Result<Value, String> {
        let template = match &self.args[0] {
            Arg::Str { raw, .. } => raw.clone(),
            // A template that comes from a path has no escapes to honour.
            _ => want_str(&values[0], "the template")?.to_string(),
        };
        let mut out = String::new();
        let mut args = values[1..].iter();
        let mut used = 0usize;
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                '{' if chars.peek() == Some(&'}') => {
                    chars.next();
                    let Some(arg) = args.next() else {
                        return Err(format!(
                            "the template has more '{{}}' placeholders than the {} arguments given",
                            values.len() - 1
                        ));
                    };
                    used += 1;
                    match arg {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&to_compact(other)),
                    }
                }
                other => out.push(other),
            }
        }
        if used != values.len() - 1 {
            return Err(format!(
                "the template has {used} '{{}}' placeholders but {} arguments were given",
                values.len() - 1
            ));
        }
        Ok(Value::String(out))
    }
}

/// Longest input `States.Hash` accepts, in characters.
const HASH_MAX_CHARS: usize = 10_000;

/// `States.Hash`: the lowercase hex digest of the UTF-8 bytes of `data`.
fn hash(data: &str, algorithm: &str) -> Result<String, String> {
    use sha2::Digest;
    let chars = data.chars().count();
    if chars > HASH_MAX_CHARS {
        return Err(format!("the data to hash must be at most {HASH_MAX_CHARS} characters long, got {chars}"));
    }
    let digest: Vec<u8> = match algorithm {
        "MD5" => md5::Md5::digest(data).to_vec(),
        "SHA-1" => sha1::Sha1::digest(data).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data).to_vec(),
        "SHA-384" => sha2::Sha384::digest(data).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data).to_vec(),
        other => {
            return Err(format!(
                "the hashing algorithm must be one of MD5, SHA-1, SHA-256, SHA-384, SHA-512, got '{other}'"
            ));
        }
    };
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn want_str<'v>(v: &'v Value, what: &str) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| format!("{what} must be a string, got {}", type_name(v)))
}

fn want_array<'v>(v: &'v Value, what: &str) -> Result<&'v Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{what} must be an array, got {}", type_name(v)))
}

fn want_int(v: &Value, what: &str) -> Result<i64, String> {
    as_integer(v).ok_or_else(|| format!("{what} must be an integer, got {}", to_compact(v)))
}

/// AWS caps generated ranges at 1000 items.
const MAX_RANGE_ITEMS: usize = 1000;

fn array_range(start: i64, end: i64, step: i64) -> Result<Value, String> {
    if step == 0 {
        return Err("the step must not be 0".to_string());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0 && x <= end) || (step < 0 && x >= end) {
        if out.len() == MAX_RANGE_ITEMS {
            return Err(format!("the range has more than {MAX_RANGE_ITEMS} items"));
        }
        out.push(Value::from(x));
        match x.checked_add(step) {
            Some(next) => x = next,
            None => break,
        }
    }
    Ok(Value::Array(out))
}

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                out.push(char::from(BASE64_ALPHABET[idx]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("'{text}' is not valid base64");
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (ci, chunk) in bytes.chunks(4).enumerate() {
        let last_chunk = ci == bytes.len() / 4 - 1;
        let mut n: u32 = 0;
        let mut pad = 0;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if c == b'=' {
                // Padding only at the end of the last chunk.
                if !last_chunk || i < 2 {
                    return Err(bad());
                }
                pad += 1;
                0
            } else {
                if pad > 0 {
                    return Err(bad());
                }
                BASE64_ALPHABET.iter().position(|&a| a == c).ok_or_else(bad)? as u32
            };
            n = (n << 6) | v;
        }
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Ok(out)
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

struct CallParser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl CallParser<'_> {
    fn err<T>(&self, reason: impl Into<String>) -> Result<T, IntrinsicError> {
        Err(IntrinsicError::Syntax { text: self.text.to_string(), reason: reason.into() })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn parse_call(&mut self) -> Result<IntrinsicCall, IntrinsicError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let Some(function) = Function::from_name(&name) else {
            return self.err(format!("unknown function '{name}'"));
        };
        self.skip_ws();
        if self.peek() != Some('(') {
            return self.err(format!("expected '(' after {name}"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                args.push(self.parse_arg()?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.err(format!("expected ',' or ')' in the arguments of {name}")),
                }
            }
        }
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return self.err(format!("{name} takes {expected} argument(s), {} given", args.len()));
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        Ok(IntrinsicCall { function, args, text })
    }

    fn parse_arg(&mut self) -> Result<Arg, IntrinsicError> {
        match self.peek() {
            Some('\'') => self.parse_string(),
            Some('$') => {
                let start = self.pos;
                let mut depth = 0i32;
                let mut quote: Option<char> = None;
                while let Some(c) = self.peek() {
                    match quote {
                        Some(q) => {
                            if c == '\\' {
                                self.pos += 1;
                            } else if c == q {
                                quote = None;
                            }
                        }
                        None => match c {
                            '\'' | '"' => quote = Some(c),
                            '[' | '(' => depth += 1,
                            ']' | ')' if depth > 0 => depth -= 1,
                            ',' | ')' => break,
                            _ => {}
                        },
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let text = text.trim_end();
                ValuePath::parse(text).map(Arg::Path).or_else(|e| self.err(format!("bad path argument '{text}': {e}")))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "true" => Ok(Arg::Literal(Value::Bool(true))),
                    "false" => Ok(Arg::Literal(Value::Bool(false))),
                    "null" => Ok(Arg::Literal(Value::Null)),
                    _ if word.starts_with("States.") => {
                        self.pos = start;
                        Ok(Arg::Call(Box::new(self.parse_call()?)))
                    }
                    _ => self.err(format!("unexpected argument '{word}'")),
                }
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                serde_json::from_str::<serde_json::Number>(&word)
                    .map(|n| Arg::Literal(Value::Number(n)))
                    .or_else(|_| self.err(format!("'{word}' is not a number")))
            }
            Some(c) => self.err(format!("unexpected '{c}' in the arguments")),
            None => self.err("unterminated argument list"),
        }
    }

    fn parse_string(&mut self) -> Result<Arg, IntrinsicError> {
        // At the opening quote.
        self.pos += 1;
        let mut value = String::new();
        let mut raw = String::new();
        loop {
            match self.peek() {
                None => return self.err("unterminated string literal"),
                Some('\\') => {
                    let Some(next) = self.chars.get(self.pos + 1).copied() else {
                        return self.err("unterminated string literal");
                    };
                    raw.push('\\');
                    raw.push(next);
                    value.push(next);
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Arg::Str { value, raw });
                }
                Some(c) => {
                    raw.push(c);
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str, input: Value) -> Result<Value, IntrinsicError> {
        IntrinsicCall::parse(text)?.evaluate(&input, &json!({"Execution": {"Name": "exec-1"}}))
    }

    // Examples from the "Intrinsic functions" page of the Step Functions developer guide.
    #[test]
    fn format_with_escapes() {
        assert_eq!(
            eval("States.Format('Hello, my name is {}.', $.name)", json!({"name": "Arnav"})).unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            eval(r"States.Format('Text with \{braces\} and \'quotes\', {}', 5)", json!({})).unwrap(),
            json!("Text with {braces} and 'quotes', 5")
        );
        assert!(eval("States.Format('{} {}', 1)", json!({})).is_err());
    }

    #[test]
    fn format_reads_context() {
        assert_eq!(eval("States.Format('run {}', $$.Execution.Name)", json!({})).unwrap(), json!("run exec-1"));
    }

    #[test]
    fn string_to_json_and_back() {
        assert_eq!(eval("States.StringToJson($.s)", json!({"s": "{\"a\": [1, 2]}"})).unwrap(), json!({"a": [1, 2]}));
        assert_eq!(eval("States.StringToJson($.s)", json!({"s": "  "})).unwrap(), Value::Null);
        assert_eq!(
            eval("States.JsonToString($.o)", json!({"o": {"a": [1, "x"]}})).unwrap(),
            json!("{\"a\":[1,\"x\"]}")
        );
    }

    #[test]
    fn array_functions() {
        assert_eq!(
            eval("States.Array('Foo', 2020, $.a, States.Array())", json!({"a": true})).unwrap(),
            json!(["Foo", 2020, true, []])
        );
        assert_eq!(
            eval("States.ArrayPartition($.a, 4)", json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]})).unwrap(),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(eval("States.ArrayRange(1, 9, 2)", json!({})).unwrap(), json!([1, 3, 5, 7, 9]));
        assert_eq!(eval("States.ArrayGetItem($.a, 5)", json!({"a": [1, 2, 3, 4, 5, 6]})).unwrap(), json!(6));
        assert_eq!(
            eval("States.ArrayUnique($.a)", json!({"a": [1, 2, 3, 3, 3, 3, 3, 3, 4]})).unwrap(),
            json!([1, 2, 3, 4])
        );
        assert_eq!(eval("States.ArrayContains($.a, $.v)", json!({"a": [1, [2]], "v": [2]})).unwrap(), json!(true));
        assert_eq!(eval("States.ArrayLength($.a)", json!({"a": [1, 2]})).unwrap(), json!(2));
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(
            eval("States.Base64Encode($.s)", json!({"s": "Data to encode"})).unwrap(),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(eval("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", json!({})).unwrap(), json!("Data to encode"));
        for s in ["", "a", "ab", "abc", "abcd"] {
            let enc = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&enc).unwrap(), s.as_bytes());
        }
        assert!(base64_decode("a===").is_err());
    }

    #[test]
    fn math_and_strings() {
        assert_eq!(eval("States.MathAdd(111, -1)", json!({})).unwrap(), json!(110));
        let r = eval("States.MathRandom(1, 999)", json!({})).unwrap();
        assert!((1..999).contains(&r.as_i64().unwrap()));
        assert_eq!(
            eval("States.MathRandom(1, 999, 7)", json!({})).unwrap(),
            eval("States.MathRandom(1, 999, 7)", json!({})).unwrap()
        );
        assert_eq!(eval("States.StringSplit('1,2,3,4,5', ',')", json!({})).unwrap(), json!(["1", "2", "3", "4", "5"]));
        assert_eq!(
            eval("States.StringSplit($.s, '.+,=')", json!({"s": "This.is+a,test=string"})).unwrap(),
            json!(["This", "is", "a", "test", "string"])
        );
        let uuid = eval("States.UUID()", json!({})).unwrap();
        assert_eq!(uuid.as_str().unwrap().len(), 36);
    }

    #[test]
    fn json_merge_is_shallow() {
        assert_eq!(
            eval("States.JsonMerge($.a, $.b, false)", json!({"a": {"x": {"y": 1}, "k": 1}, "b": {"x": {"z": 2}}}))
                .unwrap(),
            json!({"x": {"z": 2}, "k": 1})
        );
        assert!(eval("States.JsonMerge($.a, $.a, true)", json!({"a": {}})).is_err());
    }

    #[test]
    fn path_arguments_may_contain_commas_in_brackets() {
        assert_eq!(eval("States.Array($['a,b'], $.c)", json!({"a,b": 1, "c": 2})).unwrap(), json!([1, 2]));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "States.Nope()",
            "States.Format(",
            "States.Format('x'",
            "States.ArrayLength()",
            "States.UUID(1)",
            "States.Array(foo)",
            "States.Array(1) x",
            "States.Hash('a')",
        ] {
            assert!(IntrinsicCall::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    // The expected digests are those AWS returned for "input data" (the recorded conformance
    // cases) and the standard test vectors for "abc".
    #[test]
    fn hash_algorithms() {
        let h = |data: &str, alg: &str| eval(&format!("States.Hash('{data}', '{alg}')"), json!({})).unwrap();
        assert_eq!(h("input data", "MD5"), json!("812f45842bc6d66ee14572ce20db8e86"));
        assert_eq!(h("input data", "SHA-1"), json!("aaff4a450a104cd177d28d18d74485e8cae074b7"));
        assert_eq!(h("abc", "SHA-256"), json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_eq!(
            h("abc", "SHA-384"),
            json!("cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7")
        );
        assert_eq!(
            h("abc", "SHA-512"),
            json!(
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            )
        );
        let err = |text: &str, input: Value| eval(text, input).unwrap_err().to_string();
        assert!(err("States.Hash('a', 'sha-256')", json!({})).contains("must be one of MD5, SHA-1"));
        assert!(err("States.Hash($.n, 'MD5')", json!({"n": 1})).contains("must be a string"));
        assert!(err("States.Hash('a', $.n)", json!({"n": 1})).contains("must be a string"));
        let long = "x".repeat(HASH_MAX_CHARS + 1);
        assert!(err("States.Hash($.s, 'MD5')", json!({"s": long})).contains("at most 10000 characters"));
        let limit = "é".repeat(HASH_MAX_CHARS);
        assert!(eval("States.Hash($.s, 'MD5')", json!({"s": limit})).is_ok());
    }

    #[test]
    fn missing_path_argument() {
        let err = eval("States.Array($.missing)", json!({})).unwrap_err();
        assert!(matches!(err, IntrinsicError::PathNotFound { .. }));
    }
}
