//! The data model every splitter produces.

use serde::{Deserialize, Serialize};

/// A document format, as detected from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pdf,
    Xlsx,
    Xlsm,
    Xlsb,
    Xls,
    Ods,
    Csv,
    Text,
    Markdown,
    Pptx,
    Docx,
    Odt,
    Odp,
    Png,
    Jpeg,
    Gif,
    Webp,
    Tiff,
    Html,
}

impl Format {
    /// The lowercase name used in reports and messages (`pdf`, `xlsx`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Xlsx => "xlsx",
            Format::Xlsm => "xlsm",
            Format::Xlsb => "xlsb",
            Format::Xls => "xls",
            Format::Ods => "ods",
            Format::Csv => "csv",
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Pptx => "pptx",
            Format::Docx => "docx",
            Format::Odt => "odt",
            Format::Odp => "odp",
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Html => "html",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What part of the document a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// One page of a paginated document (PDF, or text split at form feeds).
    Page,
    /// One sheet of a workbook.
    Sheet,
    /// A range of rows of a CSV file or a large sheet.
    Rows,
    /// A section of a text document (split at headings or by size).
    Section,
    /// One slide of a presentation, with its speaker notes.
    Slide,
    /// An image file; its content goes to the model as an image.
    Image,
}

/// A table as cell texts, first row being the header when `has_header` is true.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Each cell as the producing application displays it (number formats applied).
    pub rows: Vec<Vec<String>>,
    pub has_header: bool,
    /// Spreadsheets: each cell's typed value, aligned with `rows` (`None`: empty cell). Empty
    /// for tables whose cells are text by nature (CSV, Word and slide tables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Vec<Option<CellValue>>>,
}

/// A spreadsheet cell's value, independent of how it is displayed: `{"number": 1500}`,
/// `{"date": "2026-04-30"}`, `{"text": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellValue {
    Number(f64),
    Text(String),
    Bool(bool),
    /// ISO 8601 date, date-time or time of day.
    Date(String),
    /// Elapsed time as `h:mm:ss`.
    Duration(String),
    /// An error value as the application shows it (`#DIV/0!`).
    Error(String),
}

/// One unit of analysis: what one LLM call sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// 0-based position in the document.
    pub index: usize,
    pub kind: UnitKind,
    /// Human title: "Page 3", the sheet name, the section heading, "Rows 2-501".
    pub title: String,
    /// The unit's text as the model will see it (tables rendered as Markdown).
    pub text: String,
    /// Tabular content (sheets, CSV rows), when the unit is a table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Table>,
    /// Conditions worth knowing: `needs_ocr` (no extractable text), `hidden` (hidden sheet),
    /// `truncated` (cut to the size limit), `empty`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// A document split into units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub format: Format,
    pub units: Vec<Unit>,
    /// Document title from metadata, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Detected dominant language of the text ("ja", "en", ...), when it can be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Text encoding the input was decoded from (for CSV/text), e.g. "Shift_JIS".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// Limits enforced on every input, so a hostile file cannot exhaust the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most units a document may split into.
    pub max_units: usize,
    /// Largest total of decompressed data (zip members, PDF streams) read from one file.
    pub max_decompressed_bytes: u64,
    /// Characters per unit; longer units are split (text/CSV) or truncated and flagged.
    pub max_unit_chars: usize,
    /// Rows per unit for CSV files (the header is repeated in each); sheets split by characters.
    pub max_rows_per_unit: usize,
    /// Most pixels (width × height) an image may have, checked on its header before decoding.
    pub max_image_pixels: u64,
    /// Deepest element nesting read from HTML (real pages stay under a few hundred).
    pub max_nesting_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 100 * 1024 * 1024,
            max_units: 5_000,
            max_decompressed_bytes: 1024 * 1024 * 1024,
            max_unit_chars: 40_000,
            max_rows_per_unit: 500,
            max_image_pixels: 50_000_000,
            max_nesting_depth: 5_000,
        }
    }
}

/// Why a document could not be ingested. Messages name the cause and what to do.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes, over the limit of {limit} bytes (raise limits.max_file_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("unsupported format: {0}")]
    Unsupported(String),
    #[error("the {format} file is encrypted (password-protected); {}", encrypted_remedy(*format))]
    Encrypted { format: Format },
    #[error(
        "sheet {sheet:?} says it spans {cells} cells; reading it would take more memory than \
         limits.max_decompressed_bytes allows (raise it to read this workbook)"
    )]
    SheetTooLarge { sheet: String, cells: u64 },
    #[error("the markup nests {depth} elements deep, over the limit of {limit} (raise limits.max_nesting_depth)")]
    TooDeep { depth: usize, limit: usize },
    #[error("the {format} file is encrypted and the password given does not open it")]
    WrongPassword { format: Format },
    #[error("the {format} file is corrupt or unreadable: {reason}")]
    Corrupt { format: Format, reason: String },
    #[error("the document has no content to analyse ({0})")]
    NoContent(String),
    #[error("the document splits into {count} units, over the limit of {limit} (raise limits.max_units)")]
    TooManyUnits { count: usize, limit: usize },
    #[error("the file decompresses to more than {limit} bytes (raise limits.max_decompressed_bytes)")]
    DecompressionLimit { limit: u64 },
    #[error("the image is {width}×{height} pixels, over the limit of {limit} pixels (raise limits.max_image_pixels)")]
    TooManyPixels { width: u64, height: u64, limit: u64 },
}

/// What to do about an encrypted file: PDFs open with a password, other formats must be saved
/// without one.
fn encrypted_remedy(format: Format) -> &'static str {
    match format {
        Format::Pdf => "give its password with --password (or BEACON_DOCUMENT_PASSWORD), or remove the password",
        _ => "save a copy without the password and try again",
    }
}
