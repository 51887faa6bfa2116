//! Runs a page's content stream far enough to know where each glyph lands: the graphics state
//! (`q`/`Q`/`cm`), the text state and matrices, the text-showing operators, and form XObjects.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object};

use super::font::Font;
use super::layout::Glyph;

/// Bounds on one page, so a hostile file cannot keep us busy forever.
const MAX_OPERATIONS: usize = 5_000_000;
const MAX_GLYPHS: usize = 2_000_000;
const MAX_FORM_DEPTH: usize = 12;
const MAX_STATE_STACK: usize = 256;

type Matrix = [f32; 6];
const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

fn mul(m: &Matrix, n: &Matrix) -> Matrix {
    [
        m[0] * n[0] + m[1] * n[2],
        m[0] * n[1] + m[1] * n[3],
        m[2] * n[0] + m[3] * n[2],
        m[2] * n[1] + m[3] * n[3],
        m[4] * n[0] + m[5] * n[2] + n[4],
        m[4] * n[1] + m[5] * n[3] + n[5],
    ]
}

fn translate(tx: f32, ty: f32) -> Matrix {
    [1.0, 0.0, 0.0, 1.0, tx, ty]
}

#[derive(Clone)]
struct GraphicsState {
    ctm: Matrix,
    char_spacing: f32,
    word_spacing: f32,
    horizontal_scale: f32,
    leading: f32,
    font: Option<Rc<Font>>,
    font_size: f32,
    rise: f32,
}

impl Default for GraphicsState {
    fn default() -> Self {
        GraphicsState {
            ctm: IDENTITY,
            char_spacing: 0.0,
            word_spacing: 0.0,
            horizontal_scale: 1.0,
            leading: 0.0,
            font: None,
            font_size: 0.0,
            rise: 0.0,
        }
    }
}

/// The decompressed bytes the content streams may still take, document-wide, shared by the
/// threads reading pages.
pub(crate) struct Budget {
    remaining: AtomicUsize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget { remaining: AtomicUsize::new(bytes) }
    }

    fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Relaxed)
    }

    fn spend(&self, bytes: usize) {
        // Saturating: two threads may both fit under the limit they read and together pass it;
        // the next stream then finds nothing left.
        let _ = self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| Some(r.saturating_sub(bytes)));
    }
}

/// The glyphs of one page and what went wrong reading it.
#[derive(Default)]
pub(crate) struct PageGlyphs {
    pub glyphs: Vec<Glyph>,
    /// Content streams that were referenced but could not be loaded or decoded.
    pub unreadable_streams: usize,
    pub streams: usize,
    pub over_budget: bool,
    /// Strings shown with no usable font (the font resource is missing, e.g. in a truncated file).
    pub shows_without_font: usize,
}

pub(crate) struct Interpreter<'a> {
    doc: &'a Document,
    fonts: HashMap<usize, Rc<Font>>,
    out: PageGlyphs,
    run: u32,
    operations: usize,
    budget: &'a Budget,
}

fn num(obj: &Object) -> Option<f32> {
    match obj {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) if r.is_finite() => Some(*r),
        _ => None,
    }
}

fn nums<const N: usize>(operands: &[Object]) -> Option<[f32; N]> {
    if operands.len() < N {
        return None;
    }
    let mut out = [0.0; N];
    for (slot, obj) in out.iter_mut().zip(&operands[operands.len() - N..]) {
        *slot = num(obj)?;
    }
    Some(out)
}

impl<'a> Interpreter<'a> {
    pub fn new(doc: &'a Document, budget: &'a Budget) -> Self {
        Interpreter { doc, fonts: HashMap::new(), out: PageGlyphs::default(), run: 0, operations: 0, budget }
    }

    /// Reads the page with id `page_id` into glyphs.
    pub fn page(mut self, page_id: lopdf::ObjectId) -> PageGlyphs {
        let doc = self.doc;
        let resources = page_resources(doc, page_id);
        let mut data = Vec::new();
        for id in doc.get_page_contents(page_id) {
            self.out.streams += 1;
            let Ok(stream) = doc.get_object(id).and_then(Object::as_stream) else {
                self.out.unreadable_streams += 1;
                continue;
            };
            match self.decode_stream(stream) {
                Some(bytes) => {
                    data.extend_from_slice(&bytes);
                    data.push(b'\n');
                }
                None => self.out.unreadable_streams += 1,
            }
        }
        // Contents may also be a direct array or stream rather than references.
        if self.out.streams == 0
            && let Ok(page) = doc.get_dictionary(page_id)
            && let Ok(contents) = page.get(b"Contents")
            && let Ok(stream) = contents.as_stream()
        {
            self.out.streams += 1;
            match self.decode_stream(stream) {
                Some(bytes) => data.extend_from_slice(&bytes),
                None => self.out.unreadable_streams += 1,
            }
        }
        let mut state = GraphicsState::default();
        self.run_content(&data, &resources, &mut state, 0);
        if let Some(visible) = visible_box(doc, page_id) {
            // Text placed outside the page is never seen (and pdftotext drops it too).
            self.out.glyphs.retain(|g| visible.shows(g));
        }
        self.out
    }

    fn decode_stream(&mut self, stream: &lopdf::Stream) -> Option<Vec<u8>> {
        match stream.get_plain_content_with_limit(self.budget.remaining()) {
            Ok(bytes) => {
                self.budget.spend(bytes.len());
                Some(bytes)
            }
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
                self.out.over_budget = true;
                None
            }
            Err(err) => {
                tracing::debug!(%err, "content stream does not decode");
                None
            }
        }
    }

    fn run_content(&mut self, data: &[u8], resources: &[&'a Dictionary], state: &mut GraphicsState, depth: usize) {
        let mut stack: Vec<GraphicsState> = Vec::new();
        let mut tm = IDENTITY;
        let mut tlm = IDENTITY;
        for op in Content::decode_iter(data) {
            let Ok(op) = op else {
                // Keep what was read before the damage.
                break;
            };
            self.operations += 1;
            if self.operations > MAX_OPERATIONS || self.out.glyphs.len() > MAX_GLYPHS {
                break;
            }
            let ops = &op.operands;
            match op.operator.as_str() {
                "q" if stack.len() < MAX_STATE_STACK => stack.push(state.clone()),
                "Q" => {
                    if let Some(s) = stack.pop() {
                        *state = s;
                    }
                }
                "cm" => {
                    if let Some(m) = nums::<6>(ops) {
                        state.ctm = mul(&m, &state.ctm);
                    }
                }
                "BT" => {
                    tm = IDENTITY;
                    tlm = IDENTITY;
                }
                "Tc" => {
                    if let Some([v]) = nums::<1>(ops) {
                        state.char_spacing = v;
                    }
                }
                "Tw" => {
                    if let Some([v]) = nums::<1>(ops) {
                        state.word_spacing = v;
                    }
                }
                "Tz" => {
                    if let Some([v]) = nums::<1>(ops) {
                        state.horizontal_scale = v / 100.0;
                    }
                }
                "TL" => {
                    if let Some([v]) = nums::<1>(ops) {
                        state.leading = v;
                    }
                }
                "Ts" => {
                    if let Some([v]) = nums::<1>(ops) {
                        state.rise = v;
                    }
                }
                "Tf" => {
                    if let (Some(name), Some(size)) =
                        (ops.first().and_then(|o| o.as_name().ok()), ops.get(1).and_then(num))
                    {
                        state.font = self.font(resources, name);
                        state.font_size = size;
                    }
                }
                "Td" => {
                    if let Some([tx, ty]) = nums::<2>(ops) {
                        tlm = mul(&translate(tx, ty), &tlm);
                        tm = tlm;
                    }
                }
                "TD" => {
                    if let Some([tx, ty]) = nums::<2>(ops) {
                        state.leading = -ty;
                        tlm = mul(&translate(tx, ty), &tlm);
                        tm = tlm;
                    }
                }
                "Tm" => {
                    if let Some(m) = nums::<6>(ops) {
                        tlm = m;
                        tm = m;
                    }
                }
                "T*" => {
                    tlm = mul(&translate(0.0, -state.leading), &tlm);
                    tm = tlm;
                }
                "Tj" => {
                    if let Some(Ok(s)) = ops.first().map(Object::as_str) {
                        self.show(s, state, &mut tm);
                    }
                }
                "'" => {
                    tlm = mul(&translate(0.0, -state.leading), &tlm);
                    tm = tlm;
                    if let Some(Ok(s)) = ops.first().map(Object::as_str) {
                        self.show(s, state, &mut tm);
                    }
                }
                "\"" => {
                    if let (Some(aw), Some(ac)) = (ops.first().and_then(num), ops.get(1).and_then(num)) {
                        state.word_spacing = aw;
                        state.char_spacing = ac;
                    }
                    tlm = mul(&translate(0.0, -state.leading), &tlm);
                    tm = tlm;
                    if let Some(Ok(s)) = ops.get(2).map(Object::as_str) {
                        self.show(s, state, &mut tm);
                    }
                }
                "TJ" => {
                    if let Some(Ok(items)) = ops.first().map(Object::as_array) {
                        for item in items {
                            match item {
                                Object::String(s, _) => self.show(s, state, &mut tm),
                                other => {
                                    if let Some(adj) = num(other) {
                                        let shift = -adj / 1000.0 * state.font_size;
                                        let vertical = state.font.as_ref().is_some_and(|f| f.vertical);
                                        let m = if vertical {
                                            translate(0.0, shift)
                                        } else {
                                            translate(shift * state.horizontal_scale, 0.0)
                                        };
                                        tm = mul(&m, &tm);
                                        self.run += 1;
                                    }
                                }
                            }
                        }
                    }
                }
                "Do" if depth < MAX_FORM_DEPTH => {
                    if let Some(name) = ops.first().and_then(|o| o.as_name().ok()) {
                        self.form(resources, name, state, depth);
                    }
                }
                _ => {}
            }
        }
    }

    fn form(&mut self, resources: &[&'a Dictionary], name: &[u8], state: &GraphicsState, depth: usize) {
        let doc = self.doc;
        let Some(stream) = lookup(doc, resources, b"XObject", name).and_then(|o| o.as_stream().ok()) else {
            return;
        };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form") {
            return;
        }
        let Some(data) = self.decode_stream(stream) else {
            return;
        };
        let matrix = stream
            .dict
            .get(b"Matrix")
            .ok()
            .map(|o| deref(doc, o))
            .and_then(|o| o.as_array().ok())
            .and_then(|a| nums::<6>(a))
            .unwrap_or(IDENTITY);
        let mut inner = state.clone();
        inner.ctm = mul(&matrix, &state.ctm);
        let mut chain: Vec<&'a Dictionary> = Vec::with_capacity(resources.len() + 1);
        if let Some(own) = stream.dict.get(b"Resources").ok().and_then(|o| deref(doc, o).as_dict().ok()) {
            chain.push(own);
        }
        chain.extend_from_slice(resources);
        self.run_content(&data, &chain, &mut inner, depth + 1);
    }

    fn font(&mut self, resources: &[&'a Dictionary], name: &[u8]) -> Option<Rc<Font>> {
        let dict = lookup(self.doc, resources, b"Font", name)?.as_dict().ok()?;
        let key = dict as *const Dictionary as usize;
        if let Some(font) = self.fonts.get(&key) {
            return Some(font.clone());
        }
        let font = Rc::new(Font::load(self.doc, dict));
        self.fonts.insert(key, font.clone());
        Some(font)
    }

    fn show(&mut self, bytes: &[u8], state: &GraphicsState, tm: &mut Matrix) {
        self.run += 1;
        let Some(font) = state.font.clone() else {
            self.out.shows_without_font += 1;
            return;
        };
        let size = state.font_size;
        let th = state.horizontal_scale;
        for glyph in font.decode(bytes) {
            let spacing = state.char_spacing + if glyph.is_space_code { state.word_spacing } else { 0.0 };
            let m = mul(tm, &state.ctm);
            // Text rendering matrix: font size, scaling and rise applied to Tm x CTM.
            let trm = mul(&[size * th, 0.0, 0.0, size, 0.0, state.rise], &m);
            let (advance, dir) = if font.vertical {
                // Reading direction is down the page in text space.
                (glyph.width * size + spacing, (-m[2], -m[3]))
            } else {
                ((glyph.width * size + spacing) * th, (m[0], m[1]))
            };
            let dir_len = dir.0.hypot(dir.1);
            let glyph_size = if font.vertical {
                (trm[0].hypot(trm[1]) / th.max(f32::EPSILON)).abs()
            } else {
                trm[2].hypot(trm[3]).abs()
            };
            if !glyph.text.is_empty() && dir_len > 0.0 && glyph_size.is_finite() {
                self.out.glyphs.push(Glyph {
                    text: glyph.text,
                    x: trm[4],
                    y: trm[5],
                    advance: advance * dir_len,
                    size: glyph_size,
                    angle: dir.1.atan2(dir.0),
                    run: self.run,
                    seq: self.out.glyphs.len() as u32,
                });
            }
            let step = if font.vertical { translate(0.0, -advance) } else { translate(advance, 0.0) };
            *tm = mul(&step, tm);
        }
    }
}

fn deref<'a>(doc: &'a Document, obj: &'a Object) -> &'a Object {
    doc.dereference(obj).map(|(_, o)| o).unwrap_or(obj)
}

/// Looks `name` up in the `category` (Font, XObject) of the first resource dictionary having it.
fn lookup<'a>(doc: &'a Document, resources: &[&'a Dictionary], category: &[u8], name: &[u8]) -> Option<&'a Object> {
    resources.iter().find_map(|res| {
        let cat = deref(doc, res.get(category).ok()?).as_dict().ok()?;
        Some(deref(doc, cat.get(name).ok()?))
    })
}

/// The part of the page a viewer shows: the CropBox, else the MediaBox (both inheritable from
/// the page tree), normalised so `x0 <= x1`, `y0 <= y1`.
struct VisibleBox {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

impl VisibleBox {
    /// Whether the glyph's centre is on the page (with a point of tolerance for rounding).
    fn shows(&self, g: &Glyph) -> bool {
        const TOLERANCE: f32 = 1.0;
        let (sin, cos) = g.angle.sin_cos();
        let (along, up) = (g.advance / 2.0, g.size / 3.0);
        let cx = g.x + along * cos - up * sin;
        let cy = g.y + along * sin + up * cos;
        (self.x0 - TOLERANCE..=self.x1 + TOLERANCE).contains(&cx)
            && (self.y0 - TOLERANCE..=self.y1 + TOLERANCE).contains(&cy)
    }
}

fn visible_box(doc: &Document, page_id: lopdf::ObjectId) -> Option<VisibleBox> {
    let rect = |key: &[u8]| -> Option<VisibleBox> {
        let array = inherited(doc, page_id, key)?;
        let array = doc.dereference(array).ok()?.1.as_array().ok()?;
        let [a, b, c, d] = nums::<4>(array)?;
        let visible = VisibleBox { x0: a.min(c), y0: b.min(d), x1: a.max(c), y1: b.max(d) };
        // A degenerate box is a broken file, not an invisible page.
        (visible.x1 - visible.x0 > 0.0 && visible.y1 - visible.y0 > 0.0).then_some(visible)
    };
    rect(b"CropBox").or_else(|| rect(b"MediaBox"))
}

/// A page attribute, from the page or the nearest ancestor in the page tree that has it.
fn inherited<'d>(doc: &'d Document, page_id: lopdf::ObjectId, key: &[u8]) -> Option<&'d Object> {
    let mut dict = doc.get_dictionary(page_id).ok()?;
    // Page trees are shallow; the bound stops a Parent loop.
    for _ in 0..32 {
        if let Ok(value) = dict.get(key) {
            return Some(value);
        }
        dict = doc.get_dictionary(dict.get(b"Parent").ok()?.as_reference().ok()?).ok()?;
    }
    None
}

fn page_resources(doc: &Document, page_id: lopdf::ObjectId) -> Vec<&Dictionary> {
    let mut chain = Vec::new();
    if let Ok((direct, ids)) = doc.get_page_resources(page_id) {
        if let Some(d) = direct {
            chain.push(d);
        }
        for id in ids {
            if let Ok(d) = doc.get_dictionary(id) {
                chain.push(d);
            }
        }
    }
    chain
}
