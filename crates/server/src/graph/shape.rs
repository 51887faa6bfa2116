//! A state machine definition as boxes and arrows: each scope (the top level, a Map's item
//! processor, a Parallel's branch) is a list of states between a start and an end marker, with
//! the transitions between them. Read from the JSON as it ran, so any definition draws, also
//! one this code does not otherwise understand (unknown fields are ignored).

use serde_json::{Map, Value};

/// What a box stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Where a scope begins (drawn as a small marker).
    Start,
    /// Where a scope ends.
    End,
    /// A state, with its `Type` (`Task`, `Choice`, `Map`, ...).
    State(String),
}

/// A box: a state or a marker, with the scopes drawn inside it (a Map's processor, a
/// Parallel's branches).
#[derive(Debug, Clone)]
pub struct Shape {
    /// Unique in the whole machine: the state's name, or a marker's `\u{1}<scope>#start` /
    /// `\u{1}<scope>#end`.
    pub id: String,
    pub name: String,
    pub kind: Kind,
    pub scopes: Vec<Scope>,
    /// A Map whose iterations are child executions (`ProcessorConfig.Mode` `DISTRIBUTED`).
    pub distributed: bool,
}

/// How one box leads to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    Next,
    /// A Choice rule.
    Choice,
    /// A Choice's `Default`.
    Default,
    /// A `Catch` clause.
    Catch,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Next => "next",
            EdgeKind::Choice => "choice",
            EdgeKind::Default => "default",
            EdgeKind::Catch => "catch",
        }
    }
}

/// A transition, by the boxes' places in the scope. Rules of one Choice that go to the same
/// state are one link (with every rule's number and text).
#[derive(Debug, Clone)]
pub struct Link {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
    pub label: Option<String>,
    /// The Choice rules (numbered from 1) it stands for; with `Default` it is also the default.
    pub rules: Vec<usize>,
}

/// The boxes of one scope (the first is the start marker, the last the end marker) and the
/// transitions between them.
#[derive(Debug, Clone)]
pub struct Scope {
    pub shapes: Vec<Shape>,
    pub links: Vec<Link>,
}

/// The longest a rule's label gets before it is cut (the whole rule is in the definition).
const LABEL_CHARS: usize = 48;

/// The top-level scope of a definition; `None` when it has no `States` object.
pub fn machine(definition: &Value) -> Option<Scope> {
    scope(definition, "")
}

fn scope(owner: &Value, prefix: &str) -> Option<Scope> {
    let states = owner.get("States")?.as_object()?;
    let start_at = owner.get("StartAt").and_then(Value::as_str).unwrap_or_default();
    let mut shapes = vec![marker(prefix, "start", Kind::Start)];
    // States in the order they are written; the start state first so the drawing reads from it.
    let mut names: Vec<&String> = states.keys().collect();
    if let Some(at) = names.iter().position(|n| n.as_str() == start_at) {
        let first = names.remove(at);
        names.insert(0, first);
    }
    for name in &names {
        shapes.push(state_shape(name, &states[name.as_str()]));
    }
    let end = shapes.len();
    shapes.push(marker(prefix, "end", Kind::End));
    let place = |name: &str| names.iter().position(|n| n.as_str() == name).map(|i| i + 1);
    let mut links = Vec::new();
    if let Some(first) = place(start_at) {
        links.push(Link { from: 0, to: first, kind: EdgeKind::Next, label: None, rules: Vec::new() });
    }
    for (i, name) in names.iter().enumerate() {
        let from = i + 1;
        let state = &states[name.as_str()];
        let mut link = |target: Option<&str>, kind: EdgeKind, label: Option<String>, rule: Option<usize>| {
            let Some(to) = target.and_then(place) else { return };
            // Another rule (or the default) of this Choice to the same state: the same arrow.
            let same = links
                .iter_mut()
                .find(|l| l.from == from && l.to == to && matches!(l.kind, EdgeKind::Choice | EdgeKind::Default));
            match same {
                Some(same) if matches!(kind, EdgeKind::Choice | EdgeKind::Default) => {
                    same.rules.extend(rule);
                    let text = [same.label.take(), label].into_iter().flatten().collect::<Vec<_>>().join(" | ");
                    same.label = Some(text);
                    if kind == EdgeKind::Default {
                        same.kind = EdgeKind::Default;
                    }
                }
                _ => links.push(Link { from, to, kind, label, rules: rule.into_iter().collect() }),
            }
        };
        for (i, rule) in state.get("Choices").and_then(Value::as_array).into_iter().flatten().enumerate() {
            link(rule.get("Next").and_then(Value::as_str), EdgeKind::Choice, Some(cut(&rule_text(rule))), Some(i + 1));
        }
        link(state.get("Default").and_then(Value::as_str), EdgeKind::Default, Some("Default".into()), None);
        link(state.get("Next").and_then(Value::as_str), EdgeKind::Next, None, None);
        for catcher in state.get("Catch").and_then(Value::as_array).into_iter().flatten() {
            let errors = catcher
                .get("ErrorEquals")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            link(
                catcher.get("Next").and_then(Value::as_str),
                EdgeKind::Catch,
                Some(cut(&format!("Catch: {errors}"))),
                None,
            );
        }
        let kind = state.get("Type").and_then(Value::as_str).unwrap_or_default();
        let ends = state.get("End").and_then(Value::as_bool).unwrap_or(false) || matches!(kind, "Succeed" | "Fail");
        if ends {
            links.push(Link { from, to: end, kind: EdgeKind::Next, label: None, rules: Vec::new() });
        }
    }
    Some(Scope { shapes, links })
}

/// A marker's id: `\u{1}` first, which no state name has (AWS refuses control characters in
/// names), so a state called `#start` is still itself.
fn marker(prefix: &str, what: &str, kind: Kind) -> Shape {
    let name = if what == "start" { "Start" } else { "End" };
    Shape { id: format!("\u{1}{prefix}#{what}"), name: name.into(), kind, scopes: Vec::new(), distributed: false }
}

fn state_shape(name: &str, state: &Value) -> Shape {
    let kind = state.get("Type").and_then(Value::as_str).unwrap_or("Unknown").to_string();
    let mut scopes = Vec::new();
    let mut distributed = false;
    if kind == "Map" {
        let processor = state.get("ItemProcessor").or_else(|| state.get("Iterator"));
        distributed = processor
            .and_then(|p| p.pointer("/ProcessorConfig/Mode"))
            .and_then(Value::as_str)
            .is_some_and(|m| m == "DISTRIBUTED");
        scopes.extend(processor.and_then(|p| scope(p, name)));
    }
    if kind == "Parallel" {
        for (i, branch) in state.get("Branches").and_then(Value::as_array).into_iter().flatten().enumerate() {
            scopes.extend(scope(branch, &format!("{name}[{i}]")));
        }
    }
    Shape { id: name.to_string(), name: name.to_string(), kind: Kind::State(kind), scopes, distributed }
}

/// A Choice rule in a line: `$.a > 100`, `$.b is present and ...`, or a JSONata condition.
fn rule_text(rule: &Value) -> String {
    let Some(rule) = rule.as_object() else { return String::new() };
    if let Some(condition) = rule.get("Condition").and_then(Value::as_str) {
        return condition.trim_start_matches("{%").trim_end_matches("%}").trim().to_string();
    }
    for (word, joiner) in [("And", " and "), ("Or", " or ")] {
        if let Some(parts) = rule.get(word).and_then(Value::as_array) {
            let parts: Vec<String> = parts.iter().map(rule_text).map(|p| bracket(&p)).collect();
            return parts.join(joiner);
        }
    }
    if let Some(inner) = rule.get("Not") {
        return format!("not {}", bracket(&rule_text(inner)));
    }
    comparison(rule)
}

fn bracket(text: &str) -> String {
    if text.contains(" and ") || text.contains(" or ") { format!("({text})") } else { text.to_string() }
}

fn comparison(rule: &Map<String, Value>) -> String {
    let variable = rule.get("Variable").and_then(Value::as_str).unwrap_or("?");
    const OPERATORS: [(&str, &str); 6] = [
        ("GreaterThanEquals", "≥"),
        ("LessThanEquals", "≤"),
        ("GreaterThan", ">"),
        ("LessThan", "<"),
        ("Equals", "=="),
        ("Matches", "matches"),
    ];
    for (key, value) in rule {
        // A type test: IsPresent, IsNull, IsString, ... (true or false).
        if let Some(what) = key.strip_prefix("Is") {
            let what = what.to_lowercase();
            return if value == &Value::Bool(false) {
                format!("{variable} is not {what}")
            } else {
                format!("{variable} is {what}")
            };
        }
        let base = key.strip_suffix("Path").unwrap_or(key);
        let Some((_, symbol)) = OPERATORS.iter().find(|(suffix, _)| base.ends_with(suffix)) else { continue };
        let shown = match value {
            Value::String(s) if key.ends_with("Path") => s.clone(),
            Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        return format!("{variable} {symbol} {shown}");
    }
    variable.to_string()
}

fn cut(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text.to_string();
    }
    let kept: String = text.chars().take(LABEL_CHARS - 1).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_choice_s_rules_its_default_and_catches_are_links_and_ends_go_to_the_end() {
        let definition = json!({
            "StartAt": "Split",
            "States": {
                "Done": {"Type": "Succeed"},
                "Split": {"Type": "Task", "Resource": "x", "Next": "Pick",
                          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}]},
                "Pick": {"Type": "Choice", "Default": "Done", "Choices": [
                    {"Variable": "$.n", "NumericGreaterThan": 100, "Next": "Many"},
                    {"And": [{"Variable": "$.a", "IsPresent": false}, {"Variable": "$.b", "StringEqualsPath": "$.c"}],
                     "Next": "Many"},
                    {"Condition": "{% $states.input.n = 1 %}", "Next": "Done"}
                ]},
                "Many": {"Type": "Map", "End": true, "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED"},
                    "StartAt": "One", "States": {"One": {"Type": "Pass", "End": true}}}}
            }
        });
        let scope = machine(&definition).unwrap();
        let ids: Vec<&str> = scope.shapes.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["\u{1}#start", "Split", "Done", "Pick", "Many", "\u{1}#end"], "the start state first");
        let labels: Vec<(usize, usize, &str)> =
            scope.links.iter().map(|l| (l.from, l.to, l.label.as_deref().unwrap_or(""))).collect();
        assert_eq!(
            labels,
            [
                (0, 1, ""),
                (1, 3, ""),
                (1, 2, "Catch: States.ALL"),
                (2, 5, ""),
                (3, 4, "$.n > 100 | $.a is not present and $.b == $.c"),
                (3, 2, "$states.input.n = 1 | Default"),
                (4, 5, ""),
            ]
        );
        assert_eq!(scope.links[4].rules, [1, 2], "two rules, one arrow");
        assert_eq!((scope.links[5].rules.as_slice(), scope.links[5].kind), ([3].as_slice(), EdgeKind::Default));
        let many = &scope.shapes[4];
        assert!(many.distributed);
        assert_eq!(
            many.scopes[0].shapes.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["\u{1}Many#start", "One", "\u{1}Many#end"]
        );
    }

    #[test]
    fn a_parallel_s_branches_are_scopes_and_long_rules_are_cut() {
        let definition = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
            {"StartAt": "B", "States": {"B": {"Type": "Choice", "Choices": [
                {"Variable": "$.a_very_long_variable_name_that_goes_on", "StringEquals": "and a long value too", "Next": "C"}],
                "Default": "C"}, "C": {"Type": "Succeed"}}}
        ]}}});
        let scope = machine(&definition).unwrap();
        let parallel = &scope.shapes[1];
        assert_eq!(parallel.scopes.len(), 2);
        assert_eq!(parallel.scopes[1].shapes[0].id, "\u{1}P[1]#start");
        let label = parallel.scopes[1].links[1].label.clone().unwrap();
        let rule = label.split(" | ").next().unwrap();
        assert_eq!(rule.chars().count(), LABEL_CHARS);
        assert!(rule.ends_with('…'));
        assert!(label.ends_with(" | Default"), "the rule and the default go to the same state");
        assert!(machine(&json!({"StartAt": "x"})).is_none());
    }
}
