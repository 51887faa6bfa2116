//! The project's own state machine (`deploy/statemachine/beacon.asl.json`) must substitute,
//! parse and validate with this crate.

use std::collections::BTreeMap;
use std::path::Path;

use beacon_asl::{StateMachine, TaskRegistry, substitute};

#[test]
fn beacon_definition_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/statemachine/beacon.asl.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIP: {} not found", path.display());
        return;
    };
    // Collect the placeholders and give each a value of the right kind: numbers for the
    // thresholds and limits, resource names for the rest.
    let mut subs = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        if after.as_bytes().get(len) == Some(&b'}') {
            let name = &after[..len];
            let value = if name.ends_with("Arn") { format!("local:{name}") } else { "10".to_string() };
            subs.insert(name.to_string(), value);
        }
        rest = after;
    }
    let substituted = substitute(&text, &subs).expect("substitution");
    let machine = StateMachine::parse(&substituted).unwrap_or_else(|e| panic!("beacon.asl.json is invalid:\n{e}"));
    let mut registry = TaskRegistry::new();
    for resource in machine.resources() {
        registry.register_fn(resource, |v, _| async move { Ok(v) });
    }
    machine.check_resources(&registry).expect("every resource has a handler");
    assert!(machine.check_resources(&TaskRegistry::new()).is_err());
}
