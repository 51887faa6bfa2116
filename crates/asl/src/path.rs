//! JSONPath as the ASL JSONPath dialect evaluates it.
//!
//! AWS Step Functions evaluates paths with the Jayway JsonPath library, so this module follows
//! Jayway's rules where they are observable:
//!
//! * a *definite* path (only `.name`, `['name']` and `[index]` steps) selects one value, and a
//!   missing value is an error whose message matches Jayway's (`Missing property in path
//!   $['a']`, `No results for path: $['a']['b']`);
//! * an *indefinite* path (wildcards, slices, unions, deep scan `..`, filters `[?(...)]`) selects
//!   a list of values, which may be empty and is never an error;
//! * a *reference path* (the kind `ResultPath` accepts) is a definite path.
//!
//! ```
//! use beacon_asl::JsonPath;
//! use serde_json::json;
//!
//! let path = JsonPath::parse("$.store.book[0].title").unwrap();
//! let doc = json!({"store": {"book": [{"title": "Sayings of the Century"}]}});
//! assert_eq!(path.select(&doc).unwrap(), json!("Sayings of the Century"));
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use crate::json::{json_equal, type_name};
use crate::variables::Variables;

/// A path that failed to parse or that selected nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The text is not a path this dialect accepts.
    #[error("invalid path '{path}': {reason}")]
    Syntax {
        /// The path text as written.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A definite path did not resolve; the message is Jayway's wording, which AWS shows.
    #[error("{message}")]
    NotFound {
        /// Jayway-style explanation, e.g. `Missing property in path $['a']`.
        message: String,
    },
    /// `ResultPath` could not be applied because the input has the wrong shape.
    #[error("{message}")]
    CannotSet {
        /// What went wrong, in words.
        message: String,
    },
}

/// A parsed JSONPath expression (JSONPath dialect of ASL).
#[derive(Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
    length_fn: bool,
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPath({})", self.text)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Child(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Names(Vec<String>),
    Indices(Vec<i64>),
    DeepScan(Box<Segment>),
    Filter(Box<Filter>),
}

impl Segment {
    fn is_definite(&self) -> bool {
        matches!(self, Segment::Child(_) | Segment::Index(_))
    }

    /// Jayway's canonical rendering, used in its error messages.
    fn fragment(&self) -> String {
        match self {
            Segment::Child(name) => format!("['{name}']"),
            Segment::Index(i) => format!("[{i}]"),
            Segment::Wildcard => "[*]".to_string(),
            Segment::Slice(a, b, s) => {
                let part = |v: &Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
                match s {
                    Some(step) => format!("[{}:{}:{step}]", part(a), part(b)),
                    None => format!("[{}:{}]", part(a), part(b)),
                }
            }
            Segment::Names(names) => {
                let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
                format!("[{}]", quoted.join(","))
            }
            Segment::Indices(idx) => {
                let parts: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
                format!("[{}]", parts.join(","))
            }
            Segment::DeepScan(inner) => format!("..{}", inner.fragment()),
            Segment::Filter(_) => "[?]".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Not(Box<Filter>),
    Exists(Operand),
    Compare(Operand, CompareOp, Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@...`: relative to the element under test.
    Current(Vec<Segment>),
    /// `$...`: relative to the document root.
    Root(Vec<Segment>),
    Literal(Value),
}

impl JsonPath {
    /// Parses a path; it must start with `$`.
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let mut parser = Parser::new(text);
        let (segments, length_fn) = parser.parse_path()?;
        Ok(JsonPath { text: text.to_string(), segments, length_fn })
    }

    fn with_text(mut self, text: &str) -> JsonPath {
        self.text = text.to_string();
        self
    }

    /// The root path `$`.
    pub fn root() -> JsonPath {
        JsonPath { text: "$".to_string(), segments: Vec::new(), length_fn: false }
    }

    /// The path as written in the definition.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the path selects at most one value (only name and index steps).
    pub fn is_definite(&self) -> bool {
        self.segments.iter().all(Segment::is_definite)
    }

    /// True when the path is a reference path, the only kind `ResultPath` accepts.
    pub fn is_reference(&self) -> bool {
        self.is_definite() && !self.length_fn
    }

    /// True for `$` alone.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty() && !self.length_fn
    }

    /// Jayway's canonical form (`$['a'][0]`), which appears in its error messages.
    pub fn canonical(&self) -> String {
        let mut out = String::from("$");
        for seg in &self.segments {
            out.push_str(&seg.fragment());
        }
        out
    }

    /// Selects from `doc`: the value for a definite path (an error when it is missing), an array
    /// of all matches for an indefinite one.
    pub fn select(&self, doc: &Value) -> Result<Value, PathError> {
        if self.is_definite() {
            let found = self.select_definite(doc)?;
            if self.length_fn {
                return length_of(found).ok_or_else(|| PathError::NotFound {
                    message: format!(
                        "Aggregation function attempted to calculate value using empty array: {}",
                        self.canonical()
                    ),
                });
            }
            Ok(found.clone())
        } else {
            let mut out = Vec::new();
            collect(&self.segments, doc, doc, &mut out);
            if self.length_fn {
                return Ok(Value::from(out.len()));
            }
            Ok(Value::Array(out.into_iter().cloned().collect()))
        }
    }

    /// True when a definite path resolves, or when an indefinite one matches anything.
    pub fn exists_in(&self, doc: &Value) -> bool {
        if self.is_definite() {
            self.select_definite(doc).is_ok()
        } else {
            let mut out = Vec::new();
            collect(&self.segments, doc, doc, &mut out);
            !out.is_empty()
        }
    }

    fn select_definite<'v>(&self, doc: &'v Value) -> Result<&'v Value, PathError> {
        let mut current = doc;
        let mut trail = String::from("$");
        let last = self.segments.len().saturating_sub(1);
        for (i, seg) in self.segments.iter().enumerate() {
            let is_leaf = i == last;
            match seg {
                Segment::Child(name) => match current {
                    Value::Object(map) => match map.get(name) {
                        Some(v) => current = v,
                        None if is_leaf => {
                            return Err(PathError::NotFound {
                                message: format!("No results for path: {}", self.canonical()),
                            });
                        }
                        None => {
                            return Err(PathError::NotFound {
                                message: format!("Missing property in path {trail}['{name}']"),
                            });
                        }
                    },
                    other => {
                        return Err(PathError::NotFound {
                            message: format!(
                                "Expected to find an object with property ['{name}'] in path \
                                 {trail} but found '{}'. This is not a json object.",
                                type_name(other)
                            ),
                        });
                    }
                },
                Segment::Index(index) => match current {
                    Value::Array(items) => match resolve_index(*index, items.len()) {
                        Some(idx) => current = &items[idx],
                        None => {
                            return Err(PathError::NotFound {
                                message: format!("No results for path: {}", self.canonical()),
                            });
                        }
                    },
                    Value::Null => {
                        return Err(PathError::NotFound { message: format!("The path {trail} is null") });
                    }
                    other => {
                        return Err(PathError::NotFound {
                            message: format!(
                                "Filter: [{index}] can only be applied to arrays. Current context \
                                 is: {}",
                                compact(other)
                            ),
                        });
                    }
                },
                _ => {
                    // Only definite paths get here; answering "nothing found" keeps a bug in
                    // this module from becoming a panic.
                    return Err(PathError::NotFound { message: format!("No results for path: {}", self.canonical()) });
                }
            }
            trail.push_str(&seg.fragment());
        }
        Ok(current)
    }

    /// Writes `value` at this reference path inside `target`, creating objects for missing
    /// names, as `ResultPath` does.
    pub fn set(&self, target: &mut Value, value: Value) -> Result<(), PathError> {
        if !self.is_reference() {
            return Err(PathError::CannotSet { message: format!("'{}' is not a reference path", self.text) });
        }
        set_at(&self.segments, target, value).map_err(|()| PathError::CannotSet {
            message: format!("Unable to apply ResultPath \"{}\" to input \"{}\"", self.text, compact(target)),
        })
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn length_of(v: &Value) -> Option<Value> {
    match v {
        Value::Array(a) => Some(Value::from(a.len())),
        Value::Object(m) => Some(Value::from(m.len())),
        Value::String(s) => Some(Value::from(s.chars().count())),
        _ => None,
    }
}

fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let idx = if index < 0 { len + index } else { index };
    if (0..len).contains(&idx) { usize::try_from(idx).ok() } else { None }
}

fn set_at(segments: &[Segment], target: &mut Value, value: Value) -> Result<(), ()> {
    let Some((first, rest)) = segments.split_first() else {
        *target = value;
        return Ok(());
    };
    match first {
        Segment::Child(name) => {
            let Value::Object(map) = target else {
                return Err(());
            };
            if rest.is_empty() {
                map.insert(name.clone(), value);
                return Ok(());
            }
            let slot = map.entry(name.clone()).or_insert_with(|| Value::Object(Map::new()));
            set_at(rest, slot, value)
        }
        Segment::Index(index) => {
            let Value::Array(items) = target else {
                return Err(());
            };
            let idx = resolve_index(*index, items.len()).ok_or(())?;
            set_at(rest, &mut items[idx], value)
        }
        _ => Err(()),
    }
}

fn collect<'v>(segments: &[Segment], current: &'v Value, root: &'v Value, out: &mut Vec<&'v Value>) {
    let Some((first, rest)) = segments.split_first() else {
        out.push(current);
        return;
    };
    match first {
        Segment::Child(name) => {
            if let Some(v) = current.as_object().and_then(|m| m.get(name)) {
                collect(rest, v, root, out);
            }
        }
        Segment::Index(index) => {
            if let Some(items) = current.as_array()
                && let Some(idx) = resolve_index(*index, items.len())
            {
                collect(rest, &items[idx], root, out);
            }
        }
        Segment::Wildcard => match current {
            Value::Object(map) => map.values().for_each(|v| collect(rest, v, root, out)),
            Value::Array(items) => items.iter().for_each(|v| collect(rest, v, root, out)),
            _ => {}
        },
        Segment::Slice(start, end, step) => {
            if let Some(items) = current.as_array() {
                for idx in slice_indices(items.len(), *start, *end, *step) {
                    collect(rest, &items[idx], root, out);
                }
            }
        }
        Segment::Names(names) => {
            if let Some(map) = current.as_object() {
                for name in names {
                    if let Some(v) = map.get(name) {
                        collect(rest, v, root, out);
                    }
                }
            }
        }
        Segment::Indices(indices) => {
            if let Some(items) = current.as_array() {
                for index in indices {
                    if let Some(idx) = resolve_index(*index, items.len()) {
                        collect(rest, &items[idx], root, out);
                    }
                }
            }
        }
        Segment::DeepScan(inner) => {
            let mut nodes = Vec::new();
            preorder(current, &mut nodes);
            for node in nodes {
                let step = std::slice::from_ref(inner.as_ref());
                let mut matched = Vec::new();
                collect(step, node, root, &mut matched);
                for m in matched {
                    collect(rest, m, root, out);
                }
            }
        }
        Segment::Filter(filter) => match current {
            Value::Array(items) => {
                for item in items {
                    if filter.test(item, root) {
                        collect(rest, item, root, out);
                    }
                }
            }
            Value::Object(_) if filter.test(current, root) => collect(rest, current, root, out),
            _ => {}
        },
    }
}

fn preorder<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    out.push(v);
    match v {
        Value::Object(map) => map.values().for_each(|c| preorder(c, out)),
        Value::Array(items) => items.iter().for_each(|c| preorder(c, out)),
        _ => {}
    }
}

fn slice_indices(len: usize, start: Option<i64>, end: Option<i64>, step: Option<i64>) -> Vec<usize> {
    let Ok(len) = i64::try_from(len) else {
        return Vec::new();
    };
    let step = step.unwrap_or(1);
    if step <= 0 {
        return Vec::new();
    }
    let clamp = |v: i64| {
        let v = if v < 0 { len + v } else { v };
        v.clamp(0, len)
    };
    let from = start.map(clamp).unwrap_or(0);
    let to = end.map(clamp).unwrap_or(len);
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        if let Ok(idx) = usize::try_from(i) {
            out.push(idx);
        }
        i += step;
    }
    out
}

impl Filter {
    fn test(&self, current: &Value, root: &Value) -> bool {
        match self {
            Filter::Or(parts) => parts.iter().any(|p| p.test(current, root)),
            Filter::And(parts) => parts.iter().all(|p| p.test(current, root)),
            Filter::Not(inner) => !inner.test(current, root),
            Filter::Exists(op) => op.resolve(current, root).is_some(),
            Filter::Compare(left, op, right) => {
                let (Some(l), Some(r)) = (left.resolve(current, root), right.resolve(current, root)) else {
                    return false;
                };
                compare_values(&l, *op, &r)
            }
        }
    }
}

impl Operand {
    fn resolve(&self, current: &Value, root: &Value) -> Option<Value> {
        let (segments, start) = match self {
            Operand::Literal(v) => return Some(v.clone()),
            Operand::Current(s) => (s, current),
            Operand::Root(s) => (s, root),
        };
        let mut out = Vec::new();
        collect(segments, start, root, &mut out);
        if segments.iter().all(Segment::is_definite) {
            out.first().map(|v| (*v).clone())
        } else if out.is_empty() {
            None
        } else {
            Some(Value::Array(out.into_iter().cloned().collect()))
        }
    }
}

fn compare_values(l: &Value, op: CompareOp, r: &Value) -> bool {
    match op {
        CompareOp::Eq => json_equal(l, r),
        CompareOp::Ne => !json_equal(l, r),
        _ => {
            let ord = match (l, r) {
                (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    _ => None,
                },
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            };
            matches!(
                (ord, op),
                (Some(Ordering::Less), CompareOp::Lt | CompareOp::Le)
                    | (Some(Ordering::Equal), CompareOp::Le | CompareOp::Ge)
                    | (Some(Ordering::Greater), CompareOp::Gt | CompareOp::Ge)
            )
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, chars: text.chars().collect(), pos: 0 }
    }

    fn err<T>(&self, reason: impl Into<String>) -> Result<T, PathError> {
        Err(PathError::Syntax { path: self.text.to_string(), reason: reason.into() })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn parse_path(&mut self) -> Result<(Vec<Segment>, bool), PathError> {
        if !self.eat('$') {
            return self.err("a path must start with '$'");
        }
        let (segments, length_fn) = self.parse_segments(false)?;
        if self.pos != self.chars.len() {
            return self.err(format!("unexpected '{}'", self.chars[self.pos]));
        }
        Ok((segments, length_fn))
    }

    /// Parses steps until the end, or (inside a filter) until a character that cannot continue
    /// a path.
    fn parse_segments(&mut self, in_filter: bool) -> Result<(Vec<Segment>, bool), PathError> {
        let mut segments = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '.' if self.peek_at(1) == Some('.') => {
                    self.pos += 2;
                    let inner = match self.peek() {
                        Some('[') => self.parse_bracket()?,
                        Some('*') => {
                            self.pos += 1;
                            Segment::Wildcard
                        }
                        _ => Segment::Child(self.parse_name(in_filter)?),
                    };
                    segments.push(Segment::DeepScan(Box::new(inner)));
                }
                '.' => {
                    self.pos += 1;
                    if self.eat('*') {
                        segments.push(Segment::Wildcard);
                        continue;
                    }
                    let name = self.parse_name(in_filter)?;
                    if name == "length" && self.peek() == Some('(') && self.peek_at(1) == Some(')') {
                        self.pos += 2;
                        if self.pos != self.chars.len() && !in_filter {
                            return self.err("length() must be the last step of a path");
                        }
                        return Ok((segments, true));
                    }
                    segments.push(Segment::Child(name));
                }
                '[' => segments.push(self.parse_bracket()?),
                _ if in_filter => break,
                other => return self.err(format!("unexpected '{other}'")),
            }
        }
        Ok((segments, false))
    }

    fn parse_name(&mut self, in_filter: bool) -> Result<String, PathError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let stop = c == '.'
                || c == '['
                || c == ']'
                || (c == '(' && self.pos > start)
                || (in_filter && (c.is_whitespace() || "=!<>&|)".contains(c)));
            if stop {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return self.err("expected a property name after '.'");
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn parse_bracket(&mut self) -> Result<Segment, PathError> {
        // At '['.
        self.pos += 1;
        self.skip_ws();
        let seg = match self.peek() {
            Some('\'') | Some('"') => {
                let mut names = vec![self.parse_quoted()?];
                self.skip_ws();
                while self.eat(',') {
                    self.skip_ws();
                    names.push(self.parse_quoted()?);
                    self.skip_ws();
                }
                if names.len() == 1 { Segment::Child(names.remove(0)) } else { Segment::Names(names) }
            }
            Some('*') => {
                self.pos += 1;
                self.skip_ws();
                Segment::Wildcard
            }
            Some('?') => {
                self.pos += 1;
                self.skip_ws();
                if !self.eat('(') {
                    return self.err("a filter must look like [?(...)]");
                }
                let filter = self.parse_or()?;
                self.skip_ws();
                if !self.eat(')') {
                    return self.err("unclosed '(' in filter");
                }
                self.skip_ws();
                Segment::Filter(Box::new(filter))
            }
            Some(_) => self.parse_index_like()?,
            None => return self.err("unclosed '['"),
        };
        if !self.eat(']') {
            return self.err("expected ']'");
        }
        Ok(seg)
    }

    fn parse_quoted(&mut self) -> Result<String, PathError> {
        let Some(quote) = self.peek() else {
            return self.err("expected a quoted name");
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.err("unterminated quoted name"),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        None => return self.err("unterminated quoted name"),
                    }
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn parse_index_like(&mut self) -> Result<Segment, PathError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == ']' {
                break;
            }
            self.pos += 1;
        }
        let body: String = self.chars[start..self.pos].iter().collect();
        let body = body.trim();
        let int = |s: &str| -> Result<Option<i64>, PathError> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<i64>().map(Some).map_err(|_| PathError::Syntax {
                path: self.text.to_string(),
                reason: format!("'{s}' is not an array index"),
            })
        };
        if body.contains(':') {
            let parts: Vec<&str> = body.split(':').collect();
            if parts.len() > 3 {
                return self.err(format!("bad array slice '[{body}]'"));
            }
            let a = int(parts[0])?;
            let b = int(parts.get(1).copied().unwrap_or(""))?;
            let s = int(parts.get(2).copied().unwrap_or(""))?;
            return Ok(Segment::Slice(a, b, s));
        }
        if body.contains(',') {
            let mut indices = Vec::new();
            for part in body.split(',') {
                match int(part)? {
                    Some(i) => indices.push(i),
                    None => return self.err(format!("bad index list '[{body}]'")),
                }
            }
            return Ok(Segment::Indices(indices));
        }
        match int(body)? {
            Some(i) => Ok(Segment::Index(i)),
            None => self.err("empty '[]'"),
        }
    }

    fn parse_or(&mut self) -> Result<Filter, PathError> {
        let mut parts = vec![self.parse_and()?];
        loop {
            self.skip_ws();
            if self.peek() == Some('|') && self.peek_at(1) == Some('|') {
                self.pos += 2;
                parts.push(self.parse_and()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::Or(parts) })
    }

    fn parse_and(&mut self) -> Result<Filter, PathError> {
        let mut parts = vec![self.parse_unary()?];
        loop {
            self.skip_ws();
            if self.peek() == Some('&') && self.peek_at(1) == Some('&') {
                self.pos += 2;
                parts.push(self.parse_unary()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
    }

    fn parse_unary(&mut self) -> Result<Filter, PathError> {
        self.skip_ws();
        if self.peek() == Some('!') && self.peek_at(1) != Some('=') {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.parse_unary()?)));
        }
        if self.eat('(') {
            let inner = self.parse_or()?;
            self.skip_ws();
            if !self.eat(')') {
                return self.err("unclosed '(' in filter");
            }
            return Ok(inner);
        }
        let left = self.parse_operand()?;
        self.skip_ws();
        let op = match (self.peek(), self.peek_at(1)) {
            (Some('='), Some('=')) => Some((CompareOp::Eq, 2)),
            (Some('!'), Some('=')) => Some((CompareOp::Ne, 2)),
            (Some('<'), Some('=')) => Some((CompareOp::Le, 2)),
            (Some('>'), Some('=')) => Some((CompareOp::Ge, 2)),
            (Some('<'), _) => Some((CompareOp::Lt, 1)),
            (Some('>'), _) => Some((CompareOp::Gt, 1)),
            _ => None,
        };
        match op {
            None => Ok(Filter::Exists(left)),
            Some((op, width)) => {
                self.pos += width;
                self.skip_ws();
                let right = self.parse_operand()?;
                Ok(Filter::Compare(left, op, right))
            }
        }
    }

    fn parse_operand(&mut self) -> Result<Operand, PathError> {
        self.skip_ws();
        match self.peek() {
            Some('@') => {
                self.pos += 1;
                let (segs, _) = self.parse_segments(true)?;
                Ok(Operand::Current(segs))
            }
            Some('$') => {
                self.pos += 1;
                let (segs, _) = self.parse_segments(true)?;
                Ok(Operand::Root(segs))
            }
            Some('\'') | Some('"') => Ok(Operand::Literal(Value::String(self.parse_quoted()?))),
            Some(_) => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_whitespace() || "=!<>&|)".contains(c) {
                        break;
                    }
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "true" => Ok(Operand::Literal(Value::Bool(true))),
                    "false" => Ok(Operand::Literal(Value::Bool(false))),
                    "null" => Ok(Operand::Literal(Value::Null)),
                    _ => match serde_json::from_str::<serde_json::Number>(&word) {
                        Ok(n) => Ok(Operand::Literal(Value::Number(n))),
                        Err(_) => self.err(format!("unsupported filter operand '{word}'")),
                    },
                }
            }
            None => self.err("unterminated filter"),
        }
    }
}

/// What a [`ValuePath`] reads: the state's (effective) input as `$`, the context object as `$$`
/// and the workflow variables as `$name`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources<'a> {
    pub(crate) input: &'a Value,
    pub(crate) context: &'a Value,
    pub(crate) vars: &'a Variables,
}

impl<'a> Sources<'a> {
    pub(crate) fn new(input: &'a Value, context: &'a Value, vars: &'a Variables) -> Sources<'a> {
        Sources { input, context, vars }
    }
}

/// A path that reads the state's input (`$...`), the context object (`$$...`) or a workflow
/// variable (`$name...`).
#[derive(Debug, Clone, PartialEq)]
pub enum ValuePath {
    /// `$...`: evaluated against the (effective) input.
    Input(JsonPath),
    /// `$$...`: evaluated against the context object.
    Context(JsonPath),
    /// `$name...`: the value of the variable `name` (set by `Assign`), then the path's steps
    /// into it, e.g. `$order.items[0]`.
    Variable {
        /// The variable's name, without `$`.
        name: String,
        /// The steps into its value, as a path from `$` (its text is the whole path as written).
        path: JsonPath,
    },
}

impl ValuePath {
    /// Parses `$...`, `$$...` or `$name...`.
    pub fn parse(text: &str) -> Result<ValuePath, PathError> {
        match text.strip_prefix('$') {
            Some(rest) if rest.starts_with('$') => JsonPath::parse(rest).map(|p| ValuePath::Context(p.with_text(text))),
            Some(rest) if rest.starts_with(|c: char| c.is_alphabetic() || c == '_') => {
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let (name, steps) = rest.split_at(end);
                match JsonPath::parse(&format!("${steps}")) {
                    Ok(p) => Ok(ValuePath::Variable { name: name.to_string(), path: p.with_text(text) }),
                    Err(PathError::Syntax { reason, .. }) => Err(PathError::Syntax { path: text.to_string(), reason }),
                    Err(e) => Err(e),
                }
            }
            _ => JsonPath::parse(text).map(ValuePath::Input),
        }
    }

    /// Evaluates against `input` or `context`, whichever the path names. A variable path finds
    /// no variables here: variables exist only inside an execution.
    pub fn select(&self, input: &Value, context: &Value) -> Result<Value, PathError> {
        self.select_in(&Sources::new(input, context, &Variables::default()))
    }

    /// True when the path resolves (never for a variable path; see [`ValuePath::select`]).
    pub fn exists_in(&self, input: &Value, context: &Value) -> bool {
        self.exists_in_sources(&Sources::new(input, context, &Variables::default()))
    }

    pub(crate) fn select_in(&self, src: &Sources<'_>) -> Result<Value, PathError> {
        match self {
            ValuePath::Input(p) => p.select(src.input),
            ValuePath::Context(p) => p.select(src.context),
            ValuePath::Variable { name, path } => match src.vars.get(name) {
                Some(v) => path.select(v),
                None => Err(PathError::NotFound { message: format!("The variable '${name}' is not defined") }),
            },
        }
    }

    pub(crate) fn exists_in_sources(&self, src: &Sources<'_>) -> bool {
        match self {
            ValuePath::Input(p) => p.exists_in(src.input),
            ValuePath::Context(p) => p.exists_in(src.context),
            ValuePath::Variable { name, path } => src.vars.get(name).is_some_and(|v| path.exists_in(v)),
        }
    }

    /// The path as written (with `$$` for context paths, `$name` for variables).
    pub fn as_str(&self) -> &str {
        match self {
            ValuePath::Input(p) | ValuePath::Context(p) | ValuePath::Variable { path: p, .. } => p.as_str(),
        }
    }

    /// True for `$` alone.
    pub fn is_root(&self) -> bool {
        matches!(self, ValuePath::Input(p) if p.is_root())
    }

    /// True when the path selects at most one value (see [`JsonPath::is_reference`]).
    pub fn is_reference(&self) -> bool {
        match self {
            ValuePath::Input(p) | ValuePath::Context(p) | ValuePath::Variable { path: p, .. } => p.is_reference(),
        }
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(path: &str, doc: &Value) -> Result<Value, PathError> {
        JsonPath::parse(path).and_then(|p| p.select(doc))
    }

    #[test]
    fn root_selects_everything() {
        let doc = json!({"a": 1});
        assert_eq!(sel("$", &doc).unwrap(), doc);
    }

    #[test]
    fn dot_and_bracket_notation_agree() {
        let doc = json!({"a": {"b c": [10, 20, {"d": true}]}});
        assert_eq!(sel("$.a['b c'][1]", &doc).unwrap(), json!(20));
        assert_eq!(sel("$['a'][\"b c\"][2].d", &doc).unwrap(), json!(true));
        assert_eq!(sel("$.a['b c'][-1].d", &doc).unwrap(), json!(true));
    }

    #[test]
    fn names_may_contain_dashes_and_dollars() {
        let doc = json!({"delivery-partner": "UQS", "cost$": 1});
        assert_eq!(sel("$.delivery-partner", &doc).unwrap(), json!("UQS"));
        assert_eq!(sel("$.cost$", &doc).unwrap(), json!(1));
    }

    #[test]
    fn missing_intermediate_property_uses_jayway_wording() {
        let err = sel("$.a.b", &json!({})).unwrap_err();
        assert_eq!(err.to_string(), "Missing property in path $['a']");
    }

    #[test]
    fn missing_leaf_property_uses_jayway_wording() {
        let err = sel("$.a.b", &json!({"a": {}})).unwrap_err();
        assert_eq!(err.to_string(), "No results for path: $['a']['b']");
    }

    #[test]
    fn index_out_of_range_is_no_result() {
        let err = sel("$.a[5]", &json!({"a": [1]})).unwrap_err();
        assert_eq!(err.to_string(), "No results for path: $['a'][5]");
    }

    // The "Paths" page of the Step Functions guide uses Goessner's book store for its examples.
    fn store() -> Value {
        json!({"store": {
            "book": [
                {"category": "reference", "author": "Nigel Rees", "title": "Sayings of the Century", "price": 8.95},
                {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword of Honour", "price": 12.99},
                {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553-21311-3", "price": 8.99},
                {"category": "fiction", "author": "J. R. R. Tolkien", "title": "The Lord of the Rings", "isbn": "0-395-19395-8", "price": 22.99}
            ],
            "bicycle": {"color": "red", "price": 19.95}
        }})
    }

    #[test]
    fn indefinite_paths_return_lists() {
        let doc = store();
        assert_eq!(
            sel("$.store.book[*].author", &doc).unwrap(),
            json!(["Nigel Rees", "Evelyn Waugh", "Herman Melville", "J. R. R. Tolkien"])
        );
        assert_eq!(sel("$..author", &doc).unwrap().as_array().unwrap().len(), 4);
        assert_eq!(sel("$.store.book[0:2].price", &doc).unwrap(), json!([8.95, 12.99]));
        assert_eq!(sel("$.store.book[-1:].title", &doc).unwrap(), json!(["The Lord of the Rings"]));
        assert_eq!(sel("$.store.book[0,2].title", &doc).unwrap(), json!(["Sayings of the Century", "Moby Dick"]));
        assert_eq!(sel("$..book[?(@.isbn)].title", &doc).unwrap(), json!(["Moby Dick", "The Lord of the Rings"]));
        assert_eq!(
            sel("$..book[?(@.price < 10)].title", &doc).unwrap(),
            json!(["Sayings of the Century", "Moby Dick"])
        );
        assert_eq!(
            sel("$.store.book[?(@.category == 'fiction' && @.price > 20)].author", &doc).unwrap(),
            json!(["J. R. R. Tolkien"])
        );
        assert_eq!(sel("$.nothing[*]", &doc).unwrap(), json!([]));
    }

    #[test]
    fn length_function() {
        assert_eq!(sel("$.a.length()", &json!({"a": [1, 2, 3]})).unwrap(), json!(3));
    }

    #[test]
    fn syntax_errors() {
        for bad in ["", "a.b", "$.", "$[", "$['a'", "$[abc]", "$.a]", "$..", "$[?(@.a =~ /x/)]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn reference_paths() {
        assert!(JsonPath::parse("$.a.b[0]").unwrap().is_reference());
        assert!(!JsonPath::parse("$.a[*]").unwrap().is_reference());
        assert!(!JsonPath::parse("$..a").unwrap().is_reference());
    }

    #[test]
    fn set_creates_objects() {
        let mut doc = json!({"x": 1});
        JsonPath::parse("$.a.b").unwrap().set(&mut doc, json!(2)).unwrap();
        assert_eq!(doc, json!({"x": 1, "a": {"b": 2}}));
    }

    #[test]
    fn set_into_non_object_fails() {
        let mut doc = json!("text");
        let err = JsonPath::parse("$.a").unwrap().set(&mut doc, json!(2)).unwrap_err();
        assert!(err.to_string().contains("Unable to apply ResultPath"));
    }
}
