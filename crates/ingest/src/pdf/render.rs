//! Pages as pictures, for image-capable models reading what has no text layer (scans, photos of
//! paper). The page is first cut out as a one-page PDF (decrypted, see [`single_page_pdf`]) and
//! then rasterized by `hayro`.

use std::sync::Arc;

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::Pdf;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings, render};

use super::{corrupt, single_page_pdf};
use crate::{Format, IngestError, Limits, guard_panic};

/// Longest side of a rendered page in pixels: what vision models read at full detail (larger
/// images are scaled down by the provider, at the caller's token cost).
pub const MAX_RENDER_SIDE: f32 = 1568.0;
/// Rendering never upsamples beyond 2× (144 dpi): small pages stay small.
const MAX_SCALE: f32 = 2.0;

/// Page `index` (0-based) of a PDF as a PNG image at most [`MAX_RENDER_SIDE`] pixels on its
/// longest side.
pub fn render_page_png(
    bytes: &[u8],
    index: usize,
    limits: &Limits,
    password: Option<&str>,
) -> Result<Vec<u8>, IngestError> {
    let page_pdf = single_page_pdf(bytes, index, limits, password)?;
    guard_panic(Format::Pdf, || render_only_page(page_pdf, limits))?
}

fn render_only_page(page_pdf: Vec<u8>, limits: &Limits) -> Result<Vec<u8>, IngestError> {
    let pdf = Pdf::new(Arc::new(page_pdf)).map_err(|e| corrupt(&format!("the page cannot be rendered ({e:?})")))?;
    let pages = pdf.pages();
    let page = pages.first().ok_or_else(|| corrupt("the page cannot be rendered (no page)"))?;
    let (width, height) = page.render_dimensions();
    if !(width.is_finite() && height.is_finite() && width >= 1.0 && height >= 1.0) {
        return Err(corrupt(&format!("the page has no usable size ({width} x {height} points)")));
    }
    let scale = (MAX_RENDER_SIDE / width.max(height)).min(MAX_SCALE);
    let (w, h) = ((width * scale).ceil() as u64, (height * scale).ceil() as u64);
    if w * h > limits.max_image_pixels {
        return Err(IngestError::TooManyPixels { width: w, height: h, limit: limits.max_image_pixels });
    }
    let cache = RenderCache::new();
    let settings = PixmapSettings { x_scale: scale, y_scale: scale, bg_color: WHITE };
    let pixmap = render(page, &cache, &InterpreterSettings::default(), &RenderSettings::default(), &settings);
    pixmap.into_png().map_err(|e| corrupt(&format!("the rendered page cannot be encoded as PNG ({e:?})")))
}
