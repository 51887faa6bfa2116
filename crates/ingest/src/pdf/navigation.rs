//! What a PDF says about its pages beyond their content: page labels (`iv`, `A-3`) and the
//! outline (bookmarks), turned into each page's title. Both are trees a hostile file can make
//! cyclic or huge, so every walk remembers what it visited and stops at a bound.

use std::collections::{HashMap, HashSet};

use lopdf::{Dictionary, Document, Object, ObjectId};

/// Most entries read from an outline or a number/name tree.
const MAX_ENTRIES: usize = 10_000;
/// Deepest nesting followed in those trees.
const MAX_DEPTH: usize = 32;

/// Page label of each page (by 0-based index) where the document defines labels.
pub(crate) fn page_labels(doc: &Document, page_count: usize) -> Vec<Option<String>> {
    let mut ranges: Vec<(usize, &Dictionary)> = Vec::new();
    if let Some(tree) = catalog_entry(doc, b"PageLabels") {
        let mut seen = HashSet::new();
        number_tree(doc, tree, 0, &mut seen, &mut ranges);
    }
    ranges.sort_by_key(|(start, _)| *start);
    (0..page_count)
        .map(|page| {
            let (start, style) = ranges.iter().rev().find(|(start, _)| *start <= page)?;
            Some(label(doc, style, page - start))
        })
        .collect()
}

/// One page's label: prefix + the number in the range's style, counted from its start value.
fn label(doc: &Document, style: &Dictionary, offset: usize) -> String {
    let prefix = style.get(b"P").ok().and_then(|p| text(doc, p)).unwrap_or_default();
    let start = style.get(b"St").ok().and_then(|s| s.as_i64().ok()).filter(|s| *s >= 1).unwrap_or(1) as usize;
    let value = start.saturating_add(offset);
    let number = match style.get(b"S").ok().and_then(|s| s.as_name().ok()) {
        Some(b"D") => value.to_string(),
        Some(b"R") => roman(value),
        Some(b"r") => roman(value).to_lowercase(),
        Some(b"A") => letters(value),
        Some(b"a") => letters(value).to_lowercase(),
        _ => String::new(),
    };
    format!("{prefix}{number}")
}

fn roman(mut n: usize) -> String {
    if n == 0 || n >= 4000 {
        return n.to_string();
    }
    const DIGITS: [(usize, &str); 13] = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ];
    let mut out = String::new();
    for (value, digits) in DIGITS {
        while n >= value {
            out.push_str(digits);
            n -= value;
        }
    }
    out
}

/// A, B, ..., Z, AA, BB, ... (the PDF style: the letter repeated).
fn letters(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let letter = char::from(b'A' + ((n - 1) % 26) as u8);
    std::iter::repeat_n(letter, (n - 1) / 26 + 1).take(64).collect()
}

/// The `Nums` pairs of a number tree (page-label ranges), through its `Kids`.
fn number_tree<'d>(
    doc: &'d Document,
    node: &'d Object,
    depth: usize,
    seen: &mut HashSet<ObjectId>,
    out: &mut Vec<(usize, &'d Dictionary)>,
) {
    if depth > MAX_DEPTH || out.len() >= MAX_ENTRIES {
        return;
    }
    let Some(dict) = dictionary(doc, node, seen) else { return };
    if let Ok(nums) = dict.get(b"Nums").and_then(Object::as_array) {
        for pair in nums.chunks_exact(2) {
            let (Ok(start), Some(style)) = (pair[0].as_i64(), dictionary(doc, &pair[1], &mut HashSet::new())) else {
                continue;
            };
            if let Ok(start) = usize::try_from(start) {
                out.push((start, style));
            }
        }
    }
    if let Ok(kids) = dict.get(b"Kids").and_then(Object::as_array) {
        for kid in kids {
            number_tree(doc, kid, depth + 1, seen, out);
        }
    }
}

/// Outline entries as (0-based page index, title), in outline order (depth first).
pub(crate) fn outline(doc: &Document, page_index: &HashMap<ObjectId, usize>) -> Vec<(usize, String)> {
    let Some(root) = catalog_entry(doc, b"Outlines") else { return Vec::new() };
    let mut seen = HashSet::new();
    let Some(root) = dictionary(doc, root, &mut seen) else { return Vec::new() };
    let names = NamedDestinations::new(doc);
    let mut entries = Vec::new();
    // Depth-first with an explicit stack of "next sibling to visit" so a long chain of siblings
    // cannot overflow the call stack.
    let mut stack: Vec<(Option<&Object>, usize)> = vec![(root.get(b"First").ok(), 0)];
    while let Some((next, depth)) = stack.pop() {
        let Some(item) = next.and_then(|n| dictionary(doc, n, &mut seen)) else { continue };
        if entries.len() >= MAX_ENTRIES {
            break;
        }
        stack.push((item.get(b"Next").ok(), depth));
        if depth < MAX_DEPTH {
            stack.push((item.get(b"First").ok(), depth + 1));
        }
        let title = item.get(b"Title").ok().and_then(|t| text(doc, t)).map(|t| t.trim().to_string());
        let target = destination(doc, item, &names).and_then(|page| page_index.get(&page).copied());
        if let (Some(title), Some(page)) = (title.filter(|t| !t.is_empty()), target) {
            entries.push((page, title));
        }
    }
    entries
}

/// The page an outline item points at: its `/Dest`, or a GoTo action's `/D`; explicit
/// (`[page /XYZ ...]`) or named.
fn destination(doc: &Document, item: &Dictionary, names: &NamedDestinations<'_>) -> Option<ObjectId> {
    let dest = match item.get(b"Dest") {
        Ok(dest) => dest,
        Err(_) => {
            let action = dictionary(doc, item.get(b"A").ok()?, &mut HashSet::new())?;
            if action.get(b"S").ok()?.as_name().ok()? != b"GoTo" {
                return None;
            }
            action.get(b"D").ok()?
        }
    };
    explicit_page(doc, dest).or_else(|| {
        let key = match doc.dereference(dest).ok()?.1 {
            Object::Name(name) => name.clone(),
            Object::String(bytes, _) => bytes.clone(),
            _ => return None,
        };
        explicit_page(doc, names.get(&key)?)
    })
}

/// The page of an explicit destination: an array (or a dictionary with `/D` holding one) whose
/// first element references the page.
fn explicit_page(doc: &Document, dest: &Object) -> Option<ObjectId> {
    let dest = doc.dereference(dest).ok()?.1;
    let array = match dest {
        Object::Array(array) => array,
        Object::Dictionary(dict) => doc.dereference(dict.get(b"D").ok()?).ok()?.1.as_array().ok()?,
        _ => return None,
    };
    array.first()?.as_reference().ok()
}

/// Named destinations: the catalog's `/Dests` dictionary (PDF 1.1) and the `/Names /Dests` name
/// tree, read on demand.
struct NamedDestinations<'d> {
    legacy: Option<&'d Dictionary>,
    tree: HashMap<Vec<u8>, &'d Object>,
}

impl<'d> NamedDestinations<'d> {
    fn new(doc: &'d Document) -> Self {
        let legacy = catalog_entry(doc, b"Dests").and_then(|d| dictionary(doc, d, &mut HashSet::new()));
        let mut tree = HashMap::new();
        if let Some(names) = catalog_entry(doc, b"Names").and_then(|n| dictionary(doc, n, &mut HashSet::new()))
            && let Ok(dests) = names.get(b"Dests")
        {
            name_tree(doc, dests, 0, &mut HashSet::new(), &mut tree);
        }
        NamedDestinations { legacy, tree }
    }

    fn get(&self, key: &[u8]) -> Option<&'d Object> {
        self.tree.get(key).copied().or_else(|| self.legacy?.get(key).ok())
    }
}

fn name_tree<'d>(
    doc: &'d Document,
    node: &'d Object,
    depth: usize,
    seen: &mut HashSet<ObjectId>,
    out: &mut HashMap<Vec<u8>, &'d Object>,
) {
    if depth > MAX_DEPTH || out.len() >= MAX_ENTRIES {
        return;
    }
    let Some(dict) = dictionary(doc, node, seen) else { return };
    if let Ok(names) = dict.get(b"Names").and_then(Object::as_array) {
        for pair in names.chunks_exact(2) {
            if let Ok(Object::String(key, _)) = doc.dereference(&pair[0]).map(|(_, o)| o) {
                out.insert(key.clone(), &pair[1]);
            }
        }
    }
    if let Ok(kids) = dict.get(b"Kids").and_then(Object::as_array) {
        for kid in kids {
            name_tree(doc, kid, depth + 1, seen, out);
        }
    }
}

fn catalog_entry<'d>(doc: &'d Document, key: &[u8]) -> Option<&'d Object> {
    doc.catalog().ok()?.get(key).ok()
}

/// The dictionary `object` is or references; `None` for anything else or a reference already
/// visited in this walk (a cycle).
fn dictionary<'d>(doc: &'d Document, object: &'d Object, seen: &mut HashSet<ObjectId>) -> Option<&'d Dictionary> {
    match object {
        Object::Dictionary(dict) => Some(dict),
        Object::Reference(id) => {
            if !seen.insert(*id) {
                return None;
            }
            doc.get_object(*id).ok()?.as_dict().ok()
        }
        _ => None,
    }
}

/// A PDF text string (PDFDocEncoding or UTF-16 with a byte order mark).
fn text(doc: &Document, object: &Object) -> Option<String> {
    let object = doc.dereference(object).ok()?.1;
    lopdf::decode_text_string(object).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_styles() {
        assert_eq!(roman(4), "IV");
        assert_eq!(roman(1994), "MCMXCIV");
        assert_eq!(letters(1), "A");
        assert_eq!(letters(27), "AA");
        assert_eq!(letters(28), "BB");
    }
}
