//! TIFF (scanners, fax servers, multi-page archives): one [`UnitKind::Image`] unit per page.
//! Models take PNG, JPEG, GIF or WebP, so a page is converted to PNG when it is sent
//! ([`tiff_page_png`]). The page chain (IFDs) is walked here, bounded and cycle-checked; the `image`
//! crate (over the `tiff` crate) reads one page at a time by seeing a header that points at it.

use std::collections::HashSet;
use std::io::{Cursor, Read, Seek, SeekFrom};

use image::codecs::tiff::TiffDecoder;
use image::{DynamicImage, ImageDecoder};

use crate::{Document, FLAG_NEEDS_OCR, Format, IngestError, Limits, Unit, UnitKind};

/// Where each page's IFD starts, in order. A BigTIFF file is read as its first page only.
fn page_offsets(bytes: &[u8], max_pages: usize) -> Result<Vec<u32>, IngestError> {
    let corrupt = |reason: &str| IngestError::Corrupt { format: Format::Tiff, reason: reason.to_string() };
    let little = match bytes.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Err(corrupt("it does not start with a TIFF byte-order mark")),
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    };
    match u16_at(2) {
        Some(42) => {}
        // BigTIFF: 64-bit offsets; the decoder reads its first page.
        Some(43) => return Ok(vec![0]),
        _ => return Err(corrupt("its header is not a TIFF header")),
    }
    let mut offsets = Vec::new();
    let mut seen = HashSet::new();
    let mut next = u32_at(4).ok_or_else(|| corrupt("the file is truncated in its header"))?;
    while next != 0 {
        if !seen.insert(next) {
            // A page chain that loops back: the pages before the loop are the document.
            break;
        }
        if offsets.len() >= max_pages {
            // Counting stops here: the file has at least one page more than allowed.
            return Err(IngestError::TooManyUnits { count: offsets.len() + 1, limit: max_pages });
        }
        let at = next as usize;
        let Some(entries) = u16_at(at) else {
            if offsets.is_empty() {
                return Err(corrupt("the file is truncated before its first page"));
            }
            break;
        };
        offsets.push(next);
        next = u32_at(at + 2 + 12 * usize::from(entries)).unwrap_or(0);
    }
    if offsets.is_empty() {
        return Err(corrupt("it has no pages"));
    }
    Ok(offsets)
}

/// The file as a reader whose header points at the IFD at `offset` (0: unchanged), so a decoder
/// that reads "the first page" reads that one.
struct PageReader<'a> {
    inner: Cursor<&'a [u8]>,
    patch: Option<[u8; 4]>,
}

impl<'a> PageReader<'a> {
    fn new(bytes: &'a [u8], offset: u32) -> Self {
        let little = bytes.starts_with(b"II");
        let patch = (offset != 0).then(|| if little { offset.to_le_bytes() } else { offset.to_be_bytes() });
        PageReader { inner: Cursor::new(bytes), patch }
    }
}

impl Read for PageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = self.inner.position();
        let n = self.inner.read(buf)?;
        if let Some(patch) = self.patch {
            for (i, byte) in buf[..n].iter_mut().enumerate() {
                let at = start + i as u64;
                if (4..8).contains(&at) {
                    *byte = patch[(at - 4) as usize];
                }
            }
        }
        Ok(n)
    }
}

impl Seek for PageReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

fn decoder(bytes: &[u8], offset: u32) -> Result<TiffDecoder<std::io::BufReader<PageReader<'_>>>, IngestError> {
    // The decoder wants BufRead; buffering over the patched reader keeps the patch in force.
    TiffDecoder::new(std::io::BufReader::new(PageReader::new(bytes, offset)))
        .map_err(|e| IngestError::Corrupt { format: Format::Tiff, reason: format!("a page cannot be read ({e})") })
}

fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), IngestError> {
    let (width, height) = (u64::from(width), u64::from(height));
    if width.saturating_mul(height) > limits.max_image_pixels {
        return Err(IngestError::TooManyPixels { width, height, limit: limits.max_image_pixels });
    }
    if width == 0 || height == 0 {
        return Err(IngestError::Corrupt { format: Format::Tiff, reason: format!("a page is {width}×{height}") });
    }
    Ok(())
}

/// One image unit per page, after checking each page's size against the pixel limit.
pub(crate) fn ingest_tiff(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    let offsets = page_offsets(bytes, limits.max_units)?;
    let many = offsets.len() > 1;
    let mut units = Vec::with_capacity(offsets.len());
    for (index, offset) in offsets.into_iter().enumerate() {
        let (width, height) = decoder(bytes, offset)?.dimensions();
        check_pixels(width, height, limits)?;
        let title =
            if many { format!("Page {} ({width}×{height})", index + 1) } else { format!("Image ({width}×{height})") };
        units.push(Unit {
            index,
            kind: UnitKind::Image,
            title,
            text: String::new(),
            table: None,
            flags: vec![FLAG_NEEDS_OCR.to_string()],
        });
    }
    Ok(Document { format: Format::Tiff, units, title: None, language: None, encoding: None })
}

/// Page `index` (0-based) of a TIFF file as a PNG image (8 bits per channel).
pub fn tiff_page_png(bytes: &[u8], index: usize, limits: &Limits) -> Result<Vec<u8>, IngestError> {
    let offsets = page_offsets(bytes, limits.max_units)?;
    let offset = *offsets.get(index).ok_or_else(|| IngestError::Corrupt {
        format: Format::Tiff,
        reason: format!("it has no page {} ({} pages)", index + 1, offsets.len()),
    })?;
    let decoder = decoder(bytes, offset)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let picture = crate::guard_panic(Format::Tiff, || DynamicImage::from_decoder(decoder))?
        .map_err(|e| IngestError::Corrupt { format: Format::Tiff, reason: format!("page {} ({e})", index + 1) })?;
    let picture = match (picture.color().has_alpha(), picture.color().has_color()) {
        (true, _) => DynamicImage::ImageRgba8(picture.to_rgba8()),
        (false, true) => DynamicImage::ImageRgb8(picture.to_rgb8()),
        (false, false) => DynamicImage::ImageLuma8(picture.to_luma8()),
    };
    let mut png = Vec::new();
    picture.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| IngestError::Corrupt {
        format: Format::Tiff,
        reason: format!("page {} cannot be written as PNG ({e})", index + 1),
    })?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageEncoder, RgbImage};

    /// A two-page TIFF: the encoder writes one page; the second is appended by hand (its IFD
    /// linked from the first), as multi-page writers do.
    fn two_pages() -> Vec<u8> {
        let mut first = Vec::new();
        let gray = GrayImage::from_fn(40, 30, |x, _| image::Luma([(x * 6) as u8]));
        image::codecs::tiff::TiffEncoder::new(Cursor::new(&mut first))
            .write_image(gray.as_raw(), 40, 30, image::ExtendedColorType::L8)
            .unwrap();
        let mut second = Vec::new();
        let rgb = RgbImage::from_pixel(20, 10, image::Rgb([200, 10, 10]));
        image::codecs::tiff::TiffEncoder::new(Cursor::new(&mut second))
            .write_image(rgb.as_raw(), 20, 10, image::ExtendedColorType::Rgb8)
            .unwrap();
        join(first, &second)
    }

    /// Appends `second` (a whole little-endian TIFF) to `first`, rebasing its offsets, and links
    /// its IFD as the page after `first`'s.
    fn join(mut first: Vec<u8>, second: &[u8]) -> Vec<u8> {
        let base = first.len() as u32;
        let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let mut tail = second.to_vec();
        let ifd = u32_at(second, 4) as usize;
        let entries = u16_at(second, ifd) as usize;
        for e in 0..entries {
            let at = ifd + 2 + 12 * e;
            let (kind, count) = (u16_at(second, at + 2), u32_at(second, at + 4));
            let size = match kind {
                3 => 2,
                4 => 4,
                5 => 8,
                _ => 1,
            } * count;
            // Values over 4 bytes live elsewhere: the field holds their offset.
            if size > 4 {
                let value = u32_at(second, at + 8) + base;
                tail[at + 8..at + 12].copy_from_slice(&value.to_le_bytes());
            }
            // Strip offsets point into the file even when they fit in the field.
            if u16_at(second, at) == 273 && size <= 4 {
                let value = u32_at(second, at + 8) + base;
                tail[at + 8..at + 12].copy_from_slice(&value.to_le_bytes());
            }
        }
        let first_ifd = u32_at(&first, 4) as usize;
        let next_at = first_ifd + 2 + 12 * u16_at(&first, first_ifd) as usize;
        first[next_at..next_at + 4].copy_from_slice(&(ifd as u32 + base).to_le_bytes());
        first.extend_from_slice(&tail);
        first
    }

    #[test]
    fn pages_become_units_and_each_converts_to_png() {
        let bytes = two_pages();
        let doc = ingest_tiff(&bytes, &Limits::default()).unwrap();
        let titles: Vec<&str> = doc.units.iter().map(|u| u.title.as_str()).collect();
        assert_eq!(titles, ["Page 1 (40×30)", "Page 2 (20×10)"]);
        let second = tiff_page_png(&bytes, 1, &Limits::default()).unwrap();
        let picture = image::load_from_memory_with_format(&second, image::ImageFormat::Png).unwrap().to_rgb8();
        assert_eq!(picture.dimensions(), (20, 10));
        assert_eq!(picture.get_pixel(3, 3).0, [200, 10, 10]);
        let first = tiff_page_png(&bytes, 0, &Limits::default()).unwrap();
        let picture = image::load_from_memory_with_format(&first, image::ImageFormat::Png).unwrap().to_luma8();
        assert_eq!(picture.get_pixel(10, 5).0, [60]);
        assert!(tiff_page_png(&bytes, 2, &Limits::default()).unwrap_err().to_string().contains("no page 3"));
    }

    #[test]
    fn hostile_tiffs_are_clear_errors() {
        let bytes = two_pages();
        let tiny = Limits { max_image_pixels: 1000, ..Limits::default() };
        assert!(matches!(ingest_tiff(&bytes, &tiny), Err(IngestError::TooManyPixels { width: 40, height: 30, .. })));
        let one = Limits { max_units: 1, ..Limits::default() };
        assert!(matches!(ingest_tiff(&bytes, &one), Err(IngestError::TooManyUnits { .. })));
        // A page chain that points back at the first page: the decoder names the cycle.
        let mut looped = bytes.clone();
        let first_ifd = u32::from_le_bytes(looped[4..8].try_into().unwrap()) as usize;
        let entries = u16::from_le_bytes([looped[first_ifd], looped[first_ifd + 1]]) as usize;
        let next_at = first_ifd + 2 + 12 * entries;
        looped[next_at..next_at + 4].copy_from_slice(&(first_ifd as u32).to_le_bytes());
        match ingest_tiff(&looped, &Limits::default()) {
            Err(IngestError::Corrupt { reason, .. }) => assert!(reason.contains("cycle"), "{reason}"),
            other => panic!("a looping page chain: {other:?}"),
        }
        // Truncated anywhere: an error, never a panic.
        for cut in [4, 9, bytes.len() / 3, bytes.len() - 5] {
            let _ = ingest_tiff(&bytes[..cut], &Limits::default());
            let _ = tiff_page_png(&bytes[..cut], 0, &Limits::default());
        }
    }
}
