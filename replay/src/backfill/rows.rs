//! The rows of a backfill file: physical lines counted from 1, NDJSON rows (one non-blank line each) and
//! RFC 4180 CSV records (quoted fields may hold commas, doubled quotes and line breaks), each with the
//! lines it spans, and a cap on a row's size so that a broken file cannot exhaust memory.

use std::io::{self, BufRead};

/// The longest row accepted; a Segment message is at most 32 KiB, a CSV row of an export far less.
pub const MAX_ROW_BYTES: usize = 1024 * 1024;

/// One row as it is in the file, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// The line the row starts on (1-based).
    pub first_line: u64,
    /// The line it ends on (a quoted CSV field may span lines).
    pub last_line: u64,
    pub bytes: Vec<u8>,
    /// The row was longer than [`MAX_ROW_BYTES`]; `bytes` holds its beginning only.
    pub too_long: bool,
}

/// Physical lines of a reader, counted, with the bytes consumed.
#[derive(Debug)]
pub struct Lines<R> {
    inner: R,
    line: u64,
    bytes: u64,
    started: bool,
}

impl<R: BufRead> Lines<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            line: 0,
            bytes: 0,
            started: false,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Appends the next physical line (with its `\n`) to `buf`, keeping at most `cap` bytes of `buf`
    /// and discarding the rest of the line. `Ok(false)` at the end of the input.
    fn append_line(&mut self, buf: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
        let mut any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            if !any {
                any = true;
                self.line += 1;
            }
            let mut chunk = chunk;
            let mut skipped_bom = 0;
            if !self.started {
                self.started = true;
                // A UTF-8 byte-order mark, which spreadsheet exports put before the header.
                if chunk.starts_with(b"\xEF\xBB\xBF") {
                    chunk = &chunk[3..];
                    skipped_bom = 3;
                }
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = cap.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
            self.inner.consume(take + skipped_bom);
            self.bytes += (take + skipped_bom) as u64;
            if done {
                break;
            }
        }
        Ok(any)
    }

    /// The next non-blank line as an NDJSON row.
    pub fn next_ndjson(&mut self) -> io::Result<Option<RawRow>> {
        loop {
            let mut buf = Vec::new();
            if !self.append_line(&mut buf, MAX_ROW_BYTES + 1)? {
                return Ok(None);
            }
            strip_line_ending(&mut buf);
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // The line was cut at MAX_ROW_BYTES + 1 bytes: longer than that means longer than allowed.
            let too_long = buf.len() > MAX_ROW_BYTES;
            buf.truncate(MAX_ROW_BYTES);
            return Ok(Some(RawRow {
                first_line: self.line,
                last_line: self.line,
                bytes: buf,
                too_long,
            }));
        }
    }

    /// The next CSV record: lines are joined while a quoted field is open. Blank lines are skipped.
    pub fn next_csv(&mut self) -> io::Result<Option<RawRow>> {
        loop {
            let mut buf = Vec::new();
            if !self.append_line(&mut buf, MAX_ROW_BYTES + 1)? {
                return Ok(None);
            }
            let first_line = self.line;
            // An odd number of quotes so far means a quoted field is still open: `""` counts two.
            while quotes_open(&buf) && buf.len() <= MAX_ROW_BYTES {
                if !self.append_line(&mut buf, MAX_ROW_BYTES + 1)? {
                    break;
                }
            }
            strip_line_ending(&mut buf);
            let too_long = buf.len() > MAX_ROW_BYTES;
            if !too_long && buf.iter().all(|b| *b == b' ' || *b == b'\t') {
                continue;
            }
            buf.truncate(MAX_ROW_BYTES);
            return Ok(Some(RawRow {
                first_line,
                last_line: self.line,
                bytes: buf,
                too_long,
            }));
        }
    }
}

fn quotes_open(buf: &[u8]) -> bool {
    buf.iter().filter(|b| **b == b'"').count() % 2 == 1
}

fn strip_line_ending(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
}

/// Why a CSV record could not be split into fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldsError {
    /// A quoted field never closed before the end of the file.
    Unterminated,
    /// A quoted field closed and something other than a comma followed.
    AfterQuote,
    NotUtf8,
}

impl std::fmt::Display for FieldsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldsError::Unterminated => "a quoted field is not closed",
            FieldsError::AfterQuote => {
                "a closing quote must be followed by a comma (a quote inside a quoted field is written \"\")"
            }
            FieldsError::NotUtf8 => "the row is not UTF-8",
        })
    }
}

/// Splits one CSV record into fields (RFC 4180). A quote inside an unquoted field is kept as text, as
/// spreadsheets write it.
pub fn fields(record: &[u8]) -> Result<Vec<String>, FieldsError> {
    let text = std::str::from_utf8(record).map_err(|_| FieldsError::NotUtf8)?;
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(FieldsError::Unterminated),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => return Err(FieldsError::AfterQuote),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}
