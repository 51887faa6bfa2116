//! Reading order: turns positioned glyphs into text.
//!
//! Glyphs are grouped by writing direction (upright, rotated, vertical CJK) and rotated so each
//! group reads left to right. A group is cut into blocks where there is vertical white space,
//! and blocks into columns where a tall gutter of white space separates two bodies of prose
//! (the recursive XY-cut, restricted so tables are not read column by column). Each block's
//! glyphs are sorted into lines top to bottom, left to right, with a space where the gap between
//! two glyphs is a word break, and right to left for Arabic and Hebrew lines.

/// A glyph on the page, in user space.
#[derive(Debug, Clone)]
pub(crate) struct Glyph {
    pub text: String,
    /// Origin (baseline start).
    pub x: f32,
    pub y: f32,
    /// Advance along the reading direction.
    pub advance: f32,
    /// Font size in user space.
    pub size: f32,
    /// Reading direction, radians.
    pub angle: f32,
    /// Glyphs shown by one string operand share a run.
    pub run: u32,
    /// Position in the content stream.
    pub seq: u32,
}

/// Deepest recursion of the XY-cut; real layouts need a handful of levels.
const MAX_DEPTH: usize = 24;

/// The text of a page's glyphs in reading order.
pub(crate) fn page_text(glyphs: Vec<Glyph>) -> String {
    // Group by direction, in whole degrees.
    let mut groups: Vec<(i32, Vec<Glyph>)> = Vec::new();
    for g in glyphs {
        let key = (g.angle.to_degrees().round() as i32).rem_euclid(360);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(g),
            None => groups.push((key, vec![g])),
        }
    }
    groups.sort_by_key(|(_, list)| std::cmp::Reverse(list.len()));
    let mut parts = Vec::new();
    for (key, mut list) in groups {
        let (sin, cos) = (key as f32).to_radians().sin_cos();
        for g in &mut list {
            let (x, y) = (g.x, g.y);
            g.x = x * cos + y * sin;
            g.y = -x * sin + y * cos;
        }
        let text = blocks_text(list, 0);
        if !text.trim().is_empty() {
            parts.push(text);
        }
    }
    parts.join("\n\n")
}

fn median_size(glyphs: &[Glyph]) -> f32 {
    let mut sizes: Vec<f32> = glyphs.iter().map(|g| g.size).collect();
    sizes.sort_by(f32::total_cmp);
    sizes.get(sizes.len() / 2).copied().filter(|s| *s > 0.0).unwrap_or(10.0)
}

fn is_blank(g: &Glyph) -> bool {
    g.text.chars().all(char::is_whitespace)
}

/// Splits at vertical white space, then at a column gutter, recursively.
fn blocks_text(glyphs: Vec<Glyph>, depth: usize) -> String {
    if glyphs.is_empty() {
        return String::new();
    }
    if depth >= MAX_DEPTH {
        return lines_text(glyphs);
    }
    let size = median_size(&glyphs);
    let bands = split_bands(glyphs, size);
    if bands.len() > 1 {
        let texts: Vec<String> =
            bands.into_iter().map(|b| blocks_text(b, depth + 1)).filter(|t| !t.is_empty()).collect();
        return texts.join("\n\n");
    }
    let Some(glyphs) = bands.into_iter().next() else {
        return String::new();
    };
    match split_columns(&glyphs, size) {
        Some(cut) => {
            let (left, right): (Vec<Glyph>, Vec<Glyph>) = glyphs.into_iter().partition(|g| g.x < cut);
            let l = blocks_text(left, depth + 1);
            let r = blocks_text(right, depth + 1);
            match (l.is_empty(), r.is_empty()) {
                (true, _) => r,
                (_, true) => l,
                _ => format!("{l}\n\n{r}"),
            }
        }
        None => lines_text(glyphs),
    }
}

/// Horizontal bands separated by vertical gaps wider than 0.8 of the font size.
fn split_bands(mut glyphs: Vec<Glyph>, size: f32) -> Vec<Vec<Glyph>> {
    glyphs.sort_by(|a, b| b.y.total_cmp(&a.y));
    let mut bands: Vec<Vec<Glyph>> = Vec::new();
    let mut current: Vec<Glyph> = Vec::new();
    // Lowest extent of the current band (glyph boxes approximated from the baseline).
    let mut low = f32::INFINITY;
    for g in glyphs {
        if is_blank(&g) {
            current.push(g);
            continue;
        }
        let top = g.y + 0.8 * g.size;
        if !current.is_empty() && low.is_finite() && low - top > 0.8 * size {
            bands.push(std::mem::take(&mut current));
            low = f32::INFINITY;
        }
        low = low.min(g.y - 0.25 * g.size);
        current.push(g);
    }
    if !current.is_empty() {
        bands.push(current);
    }
    bands
}

/// An x position separating two columns of prose, if there is one: a gap in the horizontal
/// projection at least 0.8 of the font size wide, with enough lines of enough text on both
/// sides that this is not a table.
fn split_columns(glyphs: &[Glyph], size: f32) -> Option<f32> {
    let mut spans: Vec<(f32, f32)> =
        glyphs.iter().filter(|g| !is_blank(g)).map(|g| (g.x, g.x + g.advance.max(0.0))).collect();
    if spans.len() < 40 {
        return None;
    }
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best: Option<(f32, f32)> = None; // (width, middle)
    let mut end = spans[0].1;
    for &(start, stop) in &spans[1..] {
        if start - end >= 0.8 * size {
            let width = start - end;
            if best.is_none_or(|(w, _)| width > w) {
                best = Some((width, (start + end) / 2.0));
            }
        }
        end = end.max(stop);
    }
    let (_, cut) = best?;
    let prose = |side: Vec<&Glyph>| {
        let mut baselines: Vec<f32> = side.iter().map(|g| g.y).collect();
        baselines.sort_by(f32::total_cmp);
        baselines.dedup_by(|a, b| (*a - *b).abs() < 0.5 * size);
        baselines.len() >= 3 && side.len() >= 15 * baselines.len()
    };
    let left: Vec<&Glyph> = glyphs.iter().filter(|g| g.x < cut && !is_blank(g)).collect();
    let right: Vec<&Glyph> = glyphs.iter().filter(|g| g.x >= cut && !is_blank(g)).collect();
    (prose(left) && prose(right)).then_some(cut)
}

fn is_rtl(c: char) -> bool {
    matches!(c as u32, 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF)
}

/// Lines top to bottom, glyphs left to right (right to left in RTL lines).
fn lines_text(mut glyphs: Vec<Glyph>) -> String {
    glyphs.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x.total_cmp(&b.x)));
    let mut lines: Vec<Vec<Glyph>> = Vec::new();
    let mut anchor: Option<(f32, f32)> = None;
    for g in glyphs {
        match anchor {
            Some((y, s)) if y - g.y <= 0.5 * s.max(g.size) => {
                if let Some(line) = lines.last_mut() {
                    line.push(g);
                }
            }
            _ => {
                anchor = Some((g.y, g.size));
                lines.push(vec![g]);
            }
        }
    }
    let mut out = String::new();
    for mut line in lines {
        line.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.seq.cmp(&b.seq)));
        reverse_rtl_runs(&mut line);
        let text = line_text(&line);
        let text = text.trim();
        if !text.is_empty() {
            out.push_str(text);
            out.push('\n');
        }
    }
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Rtl,
    Ltr,
    Neutral,
}

fn direction(text: &str) -> Direction {
    for c in text.chars() {
        if is_rtl(c) {
            return Direction::Rtl;
        }
        if c.is_alphanumeric() {
            return Direction::Ltr;
        }
    }
    Direction::Neutral
}

/// Glyphs sorted left to right are in visual order; Arabic and Hebrew runs read right to left,
/// so each run of RTL glyphs (with the spaces and punctuation inside it) is reversed into
/// logical order. The order of the runs themselves stays visual.
fn reverse_rtl_runs(line: &mut [Glyph]) {
    let dirs: Vec<Direction> = line.iter().map(|g| direction(&g.text)).collect();
    let mut i = 0;
    while i < line.len() {
        if dirs[i] != Direction::Rtl {
            i += 1;
            continue;
        }
        let start = i;
        let mut last_rtl = i;
        let mut j = i + 1;
        while j < line.len() && dirs[j] != Direction::Ltr {
            if dirs[j] == Direction::Rtl {
                last_rtl = j;
            }
            j += 1;
        }
        line[start..=last_rtl].reverse();
        i = last_rtl + 1;
    }
}

fn line_text(line: &[Glyph]) -> String {
    let mut text = String::new();
    let mut prev: Option<&Glyph> = None;
    for g in line {
        if let Some(p) = prev {
            // Fake bold: the same glyph drawn twice at almost the same place.
            if p.text == g.text && (p.x - g.x).abs() < 0.1 * g.size && (p.y - g.y).abs() < 0.1 * g.size {
                continue;
            }
            // Distance between the two glyph boxes, whichever side the next one is on (RTL
            // runs are read right to left).
            let gap = if g.x >= p.x { g.x - (p.x + p.advance) } else { p.x - (g.x + g.advance) };
            let continues_run = g.run == p.run && (g.seq == p.seq + 1 || g.seq + 1 == p.seq);
            let has_space = text.ends_with(char::is_whitespace) || g.text.starts_with(char::is_whitespace);
            if !has_space && !continues_run && gap > 0.18 * g.size.max(p.size) {
                text.push(' ');
            }
        }
        if g.text.starts_with(char::is_whitespace) && (text.is_empty() || text.ends_with(' ')) {
            text.push_str(g.text.trim_start());
        } else {
            text.push_str(&g.text);
        }
        prev = Some(g);
    }
    // Collapse runs of spaces left by space glyphs next to gaps.
    let mut collapsed = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if c == ' ' && collapsed.ends_with(' ') {
            continue;
        }
        collapsed.push(c);
    }
    collapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glyphs(text: &str, x: f32, y: f32, run: u32, seq0: u32) -> Vec<Glyph> {
        text.chars()
            .enumerate()
            .map(|(i, c)| Glyph {
                text: c.to_string(),
                x: x + i as f32 * 5.0,
                y,
                advance: 5.0,
                size: 10.0,
                angle: 0.0,
                run,
                seq: seq0 + i as u32,
            })
            .collect()
    }

    #[test]
    fn sorts_lines_and_inserts_word_gaps() {
        let mut g = glyphs("world", 100.0, 700.0, 2, 10);
        g.extend(glyphs("Hello", 60.0, 700.0, 1, 0));
        g.extend(glyphs("Second", 60.0, 688.0, 3, 20));
        assert_eq!(page_text(g), "Hello world\nSecond");
    }

    #[test]
    fn adjacent_runs_do_not_get_spaces() {
        let mut g = glyphs("Hel", 60.0, 700.0, 1, 0);
        g.extend(glyphs("lo", 75.0, 700.0, 2, 3));
        assert_eq!(page_text(g), "Hello");
    }

    #[test]
    fn rtl_runs_are_reversed_into_logical_order() {
        // "שלום" drawn in visual order (last letter leftmost), then a Latin word to its right.
        let mut g = glyphs("םולש", 50.0, 700.0, 1, 0);
        g.extend(glyphs("abc", 80.0, 700.0, 2, 10));
        assert_eq!(page_text(g), "שלום abc");
    }

    #[test]
    fn two_columns_are_read_one_after_the_other() {
        let mut g = Vec::new();
        let mut seq = 0;
        for line in 0..6 {
            let y = 700.0 - line as f32 * 12.0;
            g.extend(glyphs("left column of prose text", 50.0, y, seq, seq));
            seq += 100;
            g.extend(glyphs("right column of prose text", 300.0, y, seq, seq));
            seq += 100;
        }
        let text = page_text(g);
        let first_right = text.find("right").unwrap();
        assert_eq!(text[..first_right].matches("left").count(), 6, "{text}");
    }
}
