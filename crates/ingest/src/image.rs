//! Images (PNG, JPEG, GIF, WebP; TIFF in `tiff.rs`): one [`UnitKind::Image`] unit per file, with no text — a model
//! that reads images gets the file itself as an image block. Only the header is read, for the
//! dimensions, so the pixel limit is enforced before anything decodes the image.

use crate::{Document, FLAG_NEEDS_OCR, Format, IngestError, Limits, Unit, UnitKind};

/// The image format of `bytes`, by signature.
pub(crate) fn image_format(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || bytes.starts_with(b"II+\0")
        || bytes.starts_with(b"MM\0+")
    {
        Some(Format::Tiff)
    } else {
        None
    }
}

fn be16(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?)))
}

fn le16(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?)))
}

fn le24(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at + 3)?;
    Some(u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16)
}

/// Width and height from the image's header.
pub(crate) fn dimensions(bytes: &[u8], format: Format) -> Option<(u64, u64)> {
    match format {
        Format::Png => {
            let word = |at: usize| Some(u64::from(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?)));
            (bytes.get(12..16)? == b"IHDR").then_some(())?;
            Some((word(16)?, word(20)?))
        }
        Format::Gif => Some((le16(bytes, 6)?, le16(bytes, 8)?)),
        Format::Jpeg => {
            // Walk the markers to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC).
            let mut at = 2;
            while at + 9 < bytes.len() {
                if bytes[at] != 0xFF {
                    return None;
                }
                let marker = bytes[at + 1];
                if marker == 0xFF {
                    at += 1;
                    continue;
                }
                let length = usize::try_from(be16(bytes, at + 2)?).ok()?;
                if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
                    return Some((be16(bytes, at + 7)?, be16(bytes, at + 5)?));
                }
                at += 2 + length;
            }
            None
        }
        Format::Webp => match bytes.get(12..16)? {
            b"VP8 " => Some((le16(bytes, 26)? & 0x3FFF, le16(bytes, 28)? & 0x3FFF)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
                Some((u64::from(bits & 0x3FFF) + 1, u64::from((bits >> 14) & 0x3FFF) + 1))
            }
            b"VP8X" => Some((le24(bytes, 24)? + 1, le24(bytes, 27)? + 1)),
            _ => None,
        },
        _ => None,
    }
}

/// One image unit, after checking its header and its pixel count against the limit.
pub(crate) fn ingest_image(bytes: &[u8], format: Format, limits: &Limits) -> Result<Document, IngestError> {
    let (width, height) = dimensions(bytes, format).ok_or_else(|| IngestError::Corrupt {
        format,
        reason: "its header does not give the image's size (the file is truncated or damaged)".into(),
    })?;
    let pixels = width.saturating_mul(height);
    if pixels > limits.max_image_pixels {
        return Err(IngestError::TooManyPixels { width, height, limit: limits.max_image_pixels });
    }
    if pixels == 0 {
        return Err(IngestError::Corrupt { format, reason: format!("its size is {width}×{height}") });
    }
    let unit = Unit {
        index: 0,
        kind: UnitKind::Image,
        title: format!("Image ({width}×{height})"),
        text: String::new(),
        table: None,
        // The text is in the pixels: only a model that reads images can say what it is.
        flags: vec![FLAG_NEEDS_OCR.to_string()],
    };
    Ok(Document { format, units: vec![unit], title: None, language: None, encoding: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(dimensions(&png, Format::Png), Some((640, 480)));
        let gif = b"GIF89a\x20\x03\x58\x02rest";
        assert_eq!(dimensions(gif, Format::Gif), Some((800, 600)));
        // SOI, an APP0 segment of 16 bytes, SOF0 with height 300 and width 400.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend_from_slice(&[0; 14]);
        jpeg.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0x2C, 0x01, 0x90, 0x03, 0, 0, 0, 0, 0, 0]);
        assert_eq!(dimensions(&jpeg, Format::Jpeg), Some((400, 300)));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        webp.extend_from_slice(&[0; 8]);
        webp.extend_from_slice(&[0x7F, 0x02, 0x00, 0xDF, 0x01, 0x00]); // 640 × 480
        assert_eq!(dimensions(&webp, Format::Webp), Some((640, 480)));
        assert_eq!(dimensions(b"\x89PNG\r\n\x1a\n", Format::Png), None);
    }

    #[test]
    fn the_pixel_limit_is_checked_on_the_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        let error = ingest_image(&png, Format::Png, &Limits::default()).unwrap_err();
        assert!(matches!(error, IngestError::TooManyPixels { width: 100_000, .. }), "{error}");
        assert!(error.to_string().contains("limits.max_image_pixels"), "{error}");
    }
}
