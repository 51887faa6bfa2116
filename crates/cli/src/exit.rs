//! Exit codes, documented in the README. Scripts rely on them: never renumber.

/// Every unit succeeded; the report is written.
pub const SUCCESS: u8 = 0;
/// The report is written, but at least one unit failed (listed in the report).
pub const UNITS_FAILED: u8 = 1;
/// Bad command line or configuration.
pub const USAGE: u8 = 2;
/// The input file cannot be used: missing, a directory, too large, empty, unsupported,
/// encrypted, corrupt.
pub const INPUT: u8 = 3;
/// The run failed for another reason (provider set-up, storage, internal error).
pub const INTERNAL: u8 = 4;
