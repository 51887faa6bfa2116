//! Where each box and arrow of a [`Scope`] goes: a layered drawing (the way dagre and the Step
//! Functions console draw a workflow). Transitions run downwards, one row per step from the
//! start; a transition that skips rows bends through the rows between instead of crossing their
//! boxes; a transition back up (a loop: poll, wait, poll again) runs up the right-hand side.
//! A Map or Parallel is a box with its scopes drawn inside it.

use super::shape::{EdgeKind, Kind, Scope, Shape};

/// A box placed, in pixels from the drawing's top left.
#[derive(Debug, Clone)]
pub struct PlacedBox {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// The box this one is drawn inside (a Map or Parallel's id).
    pub parent: Option<String>,
    pub distributed: bool,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// An arrow: the points it passes through, from the source's edge to the target's.
#[derive(Debug, Clone)]
pub struct PlacedArrow {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    pub label: Option<String>,
    pub rules: Vec<usize>,
    pub points: Vec<[f64; 2]>,
    /// It goes back up (a loop).
    pub back: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Drawing {
    pub width: f64,
    pub height: f64,
    pub boxes: Vec<PlacedBox>,
    pub arrows: Vec<PlacedArrow>,
}

/// Sizes, in pixels.
const BOX_HEIGHT: f64 = 36.0;
const MARKER: (f64, f64) = (64.0, 24.0);
const GAP_X: f64 = 28.0;
const GAP_Y: f64 = 44.0;
/// A container's title bar (with room for a Map's progress bar) and its inner margin.
const HEADER: f64 = 58.0;
const PADDING: f64 = 14.0;
/// The width a bending arrow takes in a row it passes through.
const BEND_WIDTH: f64 = 6.0;
/// Room to the right for arrows going back up, each.
const LOOP_LANE: f64 = 14.0;
/// How far an arrow going back up runs out of its box's side before it turns.
const BEND_OUT: f64 = 7.0;

/// Lays out a scope and everything inside it.
pub fn draw(scope: &Scope) -> Drawing {
    let mut drawing = lay_out(scope, None);
    drawing.width += PADDING;
    drawing.height += PADDING;
    for b in &mut drawing.boxes {
        b.x += PADDING;
        b.y += PADDING;
    }
    for a in &mut drawing.arrows {
        for p in &mut a.points {
            p[0] += PADDING;
            p[1] += PADDING;
        }
    }
    drawing
}

/// The width a name needs (CJK characters count double).
fn text_width(text: &str) -> f64 {
    text.chars().map(|c| if (c as u32) >= 0x2E80 { 13.0 } else { 7.2 }).sum()
}

/// A box's own size and, for a container, its scopes drawn side by side.
fn size_of(shape: &Shape) -> (f64, f64, Vec<Drawing>) {
    match shape.kind {
        Kind::Start | Kind::End => (MARKER.0, MARKER.1, Vec::new()),
        Kind::State(_) if shape.scopes.is_empty() => {
            ((text_width(&shape.name) + 32.0).clamp(110.0, 300.0), BOX_HEIGHT, Vec::new())
        }
        Kind::State(_) => {
            let inner: Vec<Drawing> = shape.scopes.iter().map(|s| lay_out(s, Some(&shape.id))).collect();
            let width = inner.iter().map(|d| d.width).sum::<f64>() + GAP_X * (inner.len().saturating_sub(1)) as f64;
            let height = inner.iter().map(|d| d.height).fold(0.0, f64::max);
            let width = (width + 2.0 * PADDING).max(text_width(&shape.name) + 40.0).max(250.0);
            (width, height + HEADER + PADDING, inner)
        }
    }
}

/// One row's occupant: a box of the scope or a bend of an arrow passing through.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Box(usize),
    Bend(usize, usize),
}

fn lay_out(scope: &Scope, parent: Option<&str>) -> Drawing {
    let n = scope.shapes.len();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, link) in scope.links.iter().enumerate() {
        out[link.from].push(i);
    }
    let (order, back) = depth_first(n, scope, &out);
    let layer = layers(n, scope, &order, &back);
    let rows_count = layer.iter().copied().max().unwrap_or(0) + 1;

    // Every box in its row, every long forward arrow bending through the rows between.
    let mut rows: Vec<Vec<Slot>> = vec![Vec::new(); rows_count];
    let mut by_discovery: Vec<usize> = (0..n).collect();
    by_discovery.sort_by_key(|&v| order.iter().position(|&o| o == v).unwrap_or(n));
    for &v in &by_discovery {
        rows[layer[v]].push(Slot::Box(v));
    }
    let mut route: Vec<Vec<Slot>> = vec![Vec::new(); scope.links.len()];
    for (i, link) in scope.links.iter().enumerate() {
        if back[i] {
            continue;
        }
        for (k, row) in rows.iter_mut().enumerate().take(layer[link.to]).skip(layer[link.from] + 1) {
            row.push(Slot::Bend(i, k));
            route[i].push(Slot::Bend(i, k));
        }
    }
    order_rows(&mut rows, scope, &back, &layer);

    // Sizes, then places: rows top to bottom, each row's slots pulled under what feeds them.
    let sizes: Vec<(f64, f64, Vec<Drawing>)> = scope.shapes.iter().map(size_of).collect();
    let width_of = |slot: &Slot| match *slot {
        Slot::Box(v) => sizes[v].0,
        Slot::Bend(..) => BEND_WIDTH,
    };
    let mut center = std::collections::HashMap::<SlotKey, f64>::new();
    let mut row_top = vec![0.0; rows_count];
    let mut row_height = vec![0.0_f64; rows_count];
    let mut y = 0.0;
    for (r, row) in rows.iter().enumerate() {
        row_top[r] = y;
        row_height[r] = row.iter().map(|s| if let Slot::Box(v) = s { sizes[*v].1 } else { 0.0 }).fold(0.0, f64::max);
        y += row_height[r] + GAP_Y;
        let wanted: Vec<Option<f64>> = row
            .iter()
            .map(|slot| {
                let feeders = feeders(slot, scope, &back, &layer);
                let known: Vec<f64> = feeders.iter().filter_map(|k| center.get(k).copied()).collect();
                (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
            })
            .collect();
        for (slot, x) in row.iter().zip(place_row(row.iter().map(width_of).collect(), &wanted)) {
            center.insert(key(slot), x);
        }
    }
    let height = (y - GAP_Y).max(0.0);
    // Nothing left of zero.
    let left = rows.iter().flatten().map(|s| center[&key(s)] - width_of(s) / 2.0).fold(f64::INFINITY, f64::min);
    let shift = if left.is_finite() { -left } else { 0.0 };
    for x in center.values_mut() {
        *x += shift;
    }
    let mut width = rows.iter().flatten().map(|s| center[&key(s)] + width_of(s) / 2.0).fold(0.0, f64::max);

    let mut drawing = Drawing::default();
    let mut frame = vec![(0.0, 0.0, 0.0, 0.0); n];
    for (v, shape) in scope.shapes.iter().enumerate() {
        let (w, h, inner) = &sizes[v];
        let x = center[&SlotKey::Box(v)] - w / 2.0;
        let top = row_top[layer[v]] + (row_height[layer[v]] - h) / 2.0;
        frame[v] = (x, top, *w, *h);
        drawing.boxes.push(PlacedBox {
            id: shape.id.clone(),
            name: shape.name.clone(),
            kind: shape.kind.clone(),
            parent: parent.map(str::to_string),
            distributed: shape.distributed,
            x,
            y: top,
            w: *w,
            h: *h,
        });
        // The scopes inside, side by side under the title bar, centred.
        let used = inner.iter().map(|d| d.width).sum::<f64>() + GAP_X * inner.len().saturating_sub(1) as f64;
        let mut inner_x = x + (w - used) / 2.0;
        for d in inner {
            let dy = top + HEADER;
            drawing.boxes.extend(d.boxes.iter().cloned().map(|mut b| {
                b.x += inner_x;
                b.y += dy;
                b
            }));
            drawing.arrows.extend(d.arrows.iter().cloned().map(|mut a| {
                for p in &mut a.points {
                    p[0] += inner_x;
                    p[1] += dy;
                }
                a
            }));
            inner_x += d.width + GAP_X;
        }
    }

    let mut loops = 0;
    for (i, link) in scope.links.iter().enumerate() {
        let (fx, fy, fw, fh) = frame[link.from];
        let (tx, ty, tw, th) = frame[link.to];
        let up = back[i] || layer[link.to] <= layer[link.from];
        let points = if up {
            // Out of the source's right side into the gap below its row, along the gap to a
            // lane of its own right of everything, up it to the gap above the target's row,
            // and into the target's right side: the horizontal stretches run between rows, so
            // they cross no box (a loop to itself too: it leaves higher than it comes back).
            loops += 1;
            let lane = width + LOOP_LANE * loops as f64;
            let below = row_top[layer[link.from]] + row_height[layer[link.from]] + GAP_Y / 2.0;
            let above = (row_top[layer[link.to]] - GAP_Y / 2.0).max(0.0);
            let (out_y, in_y) = (fy + fh * 0.35, ty + th * 0.65);
            vec![
                [fx + fw, out_y],
                [fx + fw + BEND_OUT, out_y],
                [fx + fw + BEND_OUT, below],
                [lane, below],
                [lane, above],
                [tx + tw + 2.0 * BEND_OUT, above],
                [tx + tw + 2.0 * BEND_OUT, in_y],
                [tx + tw, in_y],
            ]
        } else {
            let mut points = vec![[fx + fw / 2.0, fy + fh]];
            for bend in &route[i] {
                let Slot::Bend(_, r) = *bend else { continue };
                let x = center[&key(bend)];
                points.push([x, row_top[r]]);
                points.push([x, row_top[r] + row_height[r]]);
            }
            points.push([tx + tw / 2.0, ty]);
            points
        };
        drawing.arrows.push(PlacedArrow {
            from: scope.shapes[link.from].id.clone(),
            to: scope.shapes[link.to].id.clone(),
            kind: link.kind,
            label: link.label.clone(),
            rules: link.rules.clone(),
            points,
            back: up,
        });
    }
    width += LOOP_LANE * loops as f64;
    drawing.width = width;
    drawing.height = height;
    drawing
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SlotKey {
    Box(usize),
    Bend(usize, usize),
}

fn key(slot: &Slot) -> SlotKey {
    match *slot {
        Slot::Box(v) => SlotKey::Box(v),
        Slot::Bend(i, r) => SlotKey::Bend(i, r),
    }
}

/// The slots in the row above that lead into this one.
fn feeders(slot: &Slot, scope: &Scope, back: &[bool], layer: &[usize]) -> Vec<SlotKey> {
    match *slot {
        Slot::Bend(i, r) if r == layer[scope.links[i].from] + 1 => vec![SlotKey::Box(scope.links[i].from)],
        Slot::Bend(i, r) => vec![SlotKey::Bend(i, r - 1)],
        Slot::Box(v) => scope
            .links
            .iter()
            .enumerate()
            .filter(|(i, l)| l.to == v && !back[*i] && layer[l.from] < layer[v])
            .map(
                |(i, l)| {
                    if layer[l.from] + 1 == layer[v] { SlotKey::Box(l.from) } else { SlotKey::Bend(i, layer[v] - 1) }
                },
            )
            .collect(),
    }
}

/// Depth-first from the start marker (then from anything not reached): the order boxes are
/// found in, and which links go back to a box still being explored (loops).
fn depth_first(n: usize, scope: &Scope, out: &[Vec<usize>]) -> (Vec<usize>, Vec<bool>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; n];
    let mut back = vec![false; scope.links.len()];
    let mut order = Vec::with_capacity(n);
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        // (box, next outgoing link to look at)
        let mut stack = vec![(root, 0)];
        mark[root] = Mark::Open;
        order.push(root);
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&link) = out[v].get(*next) {
                *next += 1;
                let to = scope.links[link].to;
                match mark[to] {
                    Mark::Open => back[link] = true,
                    Mark::New => {
                        mark[to] = Mark::Open;
                        order.push(to);
                        stack.push((to, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[v] = Mark::Done;
                stack.pop();
            }
        }
    }
    (order, back)
}

/// Each box's row: the longest path to it from the start over forward links; the end marker
/// alone in the last row.
fn layers(n: usize, scope: &Scope, order: &[usize], back: &[bool]) -> Vec<usize> {
    // Topological order of the forward links (Kahn's, ties by discovery order).
    let mut incoming = vec![0; n];
    for (i, link) in scope.links.iter().enumerate() {
        if !back[i] {
            incoming[link.to] += 1;
        }
    }
    let mut layer = vec![0; n];
    let mut ready: Vec<usize> = order.iter().copied().filter(|&v| incoming[v] == 0).collect();
    ready.reverse();
    while let Some(v) = ready.pop() {
        for (i, link) in scope.links.iter().enumerate() {
            if link.from != v || back[i] {
                continue;
            }
            layer[link.to] = layer[link.to].max(layer[v] + 1);
            incoming[link.to] -= 1;
            if incoming[link.to] == 0 {
                ready.push(link.to);
            }
        }
    }
    let end = n - 1;
    if matches!(scope.shapes[end].kind, Kind::End) {
        layer[end] = layer[..end].iter().copied().max().map_or(0, |m| m + 1);
    }
    layer
}

/// Orders each row to keep arrows short and uncrossed: a few sweeps down and up, each slot
/// placed at the average place of its neighbours in the row before (the barycenter heuristic).
fn order_rows(rows: &mut [Vec<Slot>], scope: &Scope, back: &[bool], layer: &[usize]) {
    let neighbours = |slot: &Slot, up: bool| -> Vec<SlotKey> {
        if up {
            return feeders(slot, scope, back, layer);
        }
        match *slot {
            Slot::Bend(i, r) if r + 1 == layer[scope.links[i].to] => vec![SlotKey::Box(scope.links[i].to)],
            Slot::Bend(i, r) => vec![SlotKey::Bend(i, r + 1)],
            Slot::Box(v) => scope
                .links
                .iter()
                .enumerate()
                .filter(|(i, l)| l.from == v && !back[*i] && layer[l.to] > layer[v])
                .map(
                    |(i, l)| {
                        if layer[l.to] == layer[v] + 1 { SlotKey::Box(l.to) } else { SlotKey::Bend(i, layer[v] + 1) }
                    },
                )
                .collect(),
        }
    };
    for sweep in 0..4 {
        let down = sweep % 2 == 0;
        let indices: Vec<usize> =
            if down { (1..rows.len()).collect() } else { (0..rows.len().saturating_sub(1)).rev().collect() };
        for r in indices {
            let other = if down { r - 1 } else { r + 1 };
            let place: std::collections::HashMap<SlotKey, usize> =
                rows[other].iter().enumerate().map(|(p, s)| (key(s), p)).collect();
            let mut keyed: Vec<(f64, Slot)> = rows[r]
                .iter()
                .enumerate()
                .map(|(p, slot)| {
                    let known: Vec<f64> =
                        neighbours(slot, down).iter().filter_map(|k| place.get(k)).map(|&p| p as f64).collect();
                    let at = if known.is_empty() { p as f64 } else { known.iter().sum::<f64>() / known.len() as f64 };
                    (at, *slot)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows[r] = keyed.into_iter().map(|(_, s)| s).collect();
        }
    }
}

/// Centres for a row's slots, in order, as near as they can be to where they are wanted
/// (`None`: anywhere) without overlapping.
fn place_row(widths: Vec<f64>, wanted: &[Option<f64>]) -> Vec<f64> {
    let total = widths.iter().sum::<f64>() + GAP_X * widths.len().saturating_sub(1) as f64;
    // Where the row would sit packed and centred on what it is wanted under.
    let known: Vec<f64> = wanted.iter().flatten().copied().collect();
    let middle = if known.is_empty() { total / 2.0 } else { known.iter().sum::<f64>() / known.len() as f64 };
    let mut x = middle - total / 2.0;
    let mut packed = Vec::with_capacity(widths.len());
    for w in &widths {
        packed.push(x + w / 2.0);
        x += w + GAP_X;
    }
    // Each slot moves to where it is wanted, then overlaps are pushed apart left to right
    // and then right to left, so the row stays in order and as near as it can.
    let mut centres: Vec<f64> = packed.iter().zip(wanted).map(|(p, w)| w.unwrap_or(*p)).collect();
    for i in 1..centres.len() {
        let least = centres[i - 1] + (widths[i - 1] + widths[i]) / 2.0 + GAP_X;
        if centres[i] < least {
            centres[i] = least;
        }
    }
    // Balance: shift the whole row by the average miss, so a push does not drag it all right.
    let misses: Vec<f64> = centres.iter().zip(wanted).filter_map(|(c, w)| w.map(|w| w - c)).collect();
    if !misses.is_empty() {
        let shift = misses.iter().sum::<f64>() / misses.len() as f64;
        for c in &mut centres {
            *c += shift;
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::super::shape;
    use super::*;
    use serde_json::json;

    fn overlaps(a: &PlacedBox, b: &PlacedBox) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    fn by_id<'a>(d: &'a Drawing, id: &str) -> &'a PlacedBox {
        d.boxes.iter().find(|b| b.id == id).unwrap_or_else(|| panic!("no box {id}"))
    }

    /// Whether the segment p-q passes through the inside of `b` (Liang-Barsky clipping against
    /// the box shrunk by a pixel, so running along or touching its edge does not count).
    fn crosses(p: [f64; 2], q: [f64; 2], b: &PlacedBox) -> bool {
        let (x0, y0, x1, y1) = (b.x + 1.0, b.y + 1.0, b.x + b.w - 1.0, b.y + b.h - 1.0);
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
        for (edge, delta) in [(p[0] - x0, -dx), (x1 - p[0], dx), (p[1] - y0, -dy), (y1 - p[1], dy)] {
            if delta == 0.0 {
                if edge < 0.0 {
                    return false;
                }
            } else {
                let t = edge / delta;
                if delta < 0.0 { t0 = t0.max(t) } else { t1 = t1.min(t) }
            }
        }
        t0 < t1
    }

    /// Every arrow starts on its source's edge and ends on its target's, forward arrows go
    /// down, and no stretch of any arrow passes through a box of its scope it does not join.
    fn check_arrows(d: &Drawing) {
        for a in &d.arrows {
            let (from, to) = (by_id(d, &a.from), by_id(d, &a.to));
            let (first, last) = (a.points[0], *a.points.last().unwrap());
            let on_edge = |b: &PlacedBox, p: [f64; 2]| {
                let inside =
                    p[0] >= b.x - 0.01 && p[0] <= b.x + b.w + 0.01 && p[1] >= b.y - 0.01 && p[1] <= b.y + b.h + 0.01;
                let on_side =
                    [p[0] - b.x, p[0] - b.x - b.w, p[1] - b.y, p[1] - b.y - b.h].iter().any(|d| d.abs() < 0.01);
                inside && on_side
            };
            assert!(on_edge(from, first), "{} -> {} does not start on {}", a.from, a.to, a.from);
            assert!(on_edge(to, last), "{} -> {} does not end on {}", a.from, a.to, a.to);
            if !a.back {
                assert!(last[1] > first[1], "{} -> {} goes down", a.from, a.to);
            }
            for b in d.boxes.iter().filter(|b| b.parent == from.parent && b.id != a.from && b.id != a.to) {
                for pair in a.points.windows(2) {
                    assert!(!crosses(pair[0], pair[1], b), "{} -> {} crosses {}: {:?}", a.from, a.to, b.id, a.points);
                }
            }
        }
    }

    #[test]
    fn the_crossing_check_sees_a_crossing() {
        let b = PlacedBox {
            id: "b".into(),
            name: "b".into(),
            kind: Kind::State("Pass".into()),
            parent: None,
            distributed: false,
            x: 10.0,
            y: 10.0,
            w: 20.0,
            h: 20.0,
        };
        assert!(crosses([0.0, 20.0], [40.0, 20.0], &b));
        assert!(crosses([0.0, 0.0], [40.0, 40.0], &b));
        assert!(!crosses([0.0, 10.0], [40.0, 10.0], &b), "along its edge");
        assert!(!crosses([0.0, 0.0], [9.0, 40.0], &b));
    }

    #[test]
    fn beacon_s_own_machine_draws_without_overlaps_and_every_arrow_joins_its_boxes() {
        let text = beacon_pipeline::flow::definition_text(&beacon_pipeline::Config::default()).unwrap();
        let definition: serde_json::Value = serde_json::from_str(&text).unwrap();
        let d = draw(&shape::machine(&definition).unwrap());
        let top: Vec<&PlacedBox> = d.boxes.iter().filter(|b| b.parent.is_none()).collect();
        for (i, a) in top.iter().enumerate() {
            for b in &top[i + 1..] {
                assert!(!overlaps(a, b), "{} overlaps {}", a.id, b.id);
            }
        }
        for b in &d.boxes {
            assert!(b.x >= 0.0 && b.y >= 0.0 && b.x + b.w <= d.width && b.y + b.h <= d.height, "{} is outside", b.id);
            if let Some(parent) = &b.parent {
                let p = by_id(&d, parent);
                assert!(
                    b.x >= p.x && b.x + b.w <= p.x + p.w && b.y >= p.y && b.y + b.h <= p.y + p.h,
                    "{} outside {}",
                    b.id,
                    p.id
                );
            }
        }
        check_arrows(&d);
        // The three strategy paths leave the choice side by side, one row down.
        let choose = by_id(&d, "ChooseStrategy");
        let paths: Vec<&PlacedBox> =
            ["InlineWork", "AnalyseUnitsDistributed", "PrepareBatch"].iter().map(|id| by_id(&d, id)).collect();
        assert!(paths.iter().all(|p| p.y > choose.y));
        // The batch path's poll loop goes back up.
        assert!(d.arrows.iter().any(|a| a.back), "the poll loop is drawn going back up");
        // The distributed Map's processor is inside it, itself holding the per-unit Map.
        assert_eq!(by_id(&d, "AnalyseBatchOfUnits").parent.as_deref(), Some("AnalyseUnitsDistributed"));
        assert!(by_id(&d, "AnalyseUnitsDistributed").distributed);
    }

    #[test]
    fn a_loop_goes_up_the_side_and_a_row_skipping_arrow_bends() {
        let definition = json!({"StartAt": "A", "States": {
            "A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "BooleanEquals": true, "Next": "D"}], "Default": "B"},
            "B": {"Type": "Pass", "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.again", "BooleanEquals": true, "Next": "B"}], "Default": "D"},
            "D": {"Type": "Succeed"}
        }});
        let d = draw(&shape::machine(&definition).unwrap());
        check_arrows(&d);
        let up = d.arrows.iter().find(|a| a.from == "C" && a.to == "B").unwrap();
        assert!(up.back);
        assert!(up.points[1][0] > by_id(&d, "C").x + by_id(&d, "C").w);
        let skip = d.arrows.iter().find(|a| a.from == "A" && a.to == "D").unwrap();
        assert!(skip.points.len() > 2, "bends through the rows of B and C");
        assert!(by_id(&d, "D").y > by_id(&d, "C").y && by_id(&d, "\u{1}#end").y > by_id(&d, "D").y);
    }

    #[test]
    fn odd_definitions_draw_a_loop_to_itself_an_unknown_target_and_no_states() {
        let definition = json!({"StartAt": "Poll", "States": {
            "Poll": {"Type": "Choice", "Choices": [{"Variable": "$.done", "BooleanEquals": false, "Next": "Poll"}],
                     "Default": "Nowhere"},
            "Lost": {"Type": "Pass", "End": true}
        }});
        let d = draw(&shape::machine(&definition).unwrap());
        check_arrows(&d);
        let own = d.arrows.iter().find(|a| a.from == "Poll" && a.to == "Poll").unwrap();
        assert!(own.back && own.points[0][1] < own.points.last().unwrap()[1], "leaves higher than it comes back");
        assert!(d.arrows.iter().all(|a| a.to != "Nowhere"), "no arrow to a state that does not exist");
        assert!(by_id(&d, "Lost").y >= 0.0, "an unreachable state is drawn too");
        let empty = draw(&shape::machine(&json!({"StartAt": "x", "States": {}})).unwrap());
        assert_eq!(empty.boxes.len(), 2, "a start and an end");
    }
}
