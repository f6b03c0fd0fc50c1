//! A [`Read`] adapter that bounds what one CSV record can cost.
//!
//! The `csv` crate reads a whole record into memory before the caller can look at it, so one
//! endless line (or a stray quote that swallows the rest of the file) would cost as much memory
//! as the file is long. [`RecordLimit`] sits between the file and the CSV reader, follows the
//! CSV grammar just far enough to see where each record ends, and passes on at most a limit's
//! worth of each record (a larger limit for the header line). The rest is dropped up to the
//! record's end, where the CSV parser would have ended it, so the records after it (and their
//! numbers) stay as they were. A dropped tail is logged as a [`Cut`], placed by its offset in
//! the output stream, so that the reader can tell which record it belongs to however far the
//! CSV reader has buffered ahead.

use std::collections::VecDeque;
use std::io::{self, Read};

use super::{MAX_HEADER_BYTES, MAX_RECORD_BYTES};

/// Where a record was cut, found again by [`RecordLimit::take_cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// Offset in the output stream at which the record's bytes stop.
    pub output_at: u64,
    /// Offset in the input at which the cut record starts.
    pub input_start: u64,
    /// Input bytes dropped.
    pub dropped: u64,
    /// Bytes added to end the record cleanly (a quote that closes an open quoted field).
    pub added: u64,
}

/// Where in the CSV grammar the byte stream is, as far as record ends are concerned. Mirrors
/// csv-core with its defaults (quoting on, doubled quotes, no escape or comment byte, CR, LF or
/// CRLF ending a record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// Outside quotes. `at_field_start`: the previous byte ended a field or a record, so a quote
    /// now opens a quoted field (anywhere else csv-core reads a quote as text).
    Outside { at_field_start: bool },
    /// Inside a quoted field.
    Inside,
    /// Inside a quoted field just after a quote: either half of a doubled quote or the closing one.
    AfterQuote,
}

impl Quoting {
    const START: Quoting = Quoting::Outside {
        at_field_start: true,
    };

    /// Follows `data` and returns the position of the first byte that ends a record, leaving
    /// the state just after it; `None` if no record ends in `data` (state at its end).
    fn find_record_end(&mut self, data: &[u8], delimiter: u8) -> Option<usize> {
        let mut i = 0;
        while i < data.len() {
            match *self {
                Quoting::Outside { at_field_start } => {
                    // Only a quote or a line end can matter here: delimiters are looked at
                    // only when a quote follows one.
                    let Some(p) = find_quote_or_line_end(&data[i..]) else {
                        // `data[i..]` is not empty: its last byte is the one before what follows.
                        *self = Quoting::Outside {
                            at_field_start: data.last() == Some(&delimiter),
                        };
                        return None;
                    };
                    let at = i + p;
                    if data[at] != b'"' {
                        *self = Quoting::START;
                        return Some(at);
                    }
                    let opens = if p == 0 {
                        at_field_start
                    } else {
                        data[at - 1] == delimiter
                    };
                    *self = if opens {
                        Quoting::Inside
                    } else {
                        Quoting::Outside {
                            at_field_start: false,
                        }
                    };
                    i = at + 1;
                }
                Quoting::Inside => match data[i..].iter().position(|&b| b == b'"') {
                    Some(p) => {
                        *self = Quoting::AfterQuote;
                        i += p + 1;
                    }
                    None => return None,
                },
                Quoting::AfterQuote => {
                    let b = data[i];
                    if is_line_end(b) {
                        *self = Quoting::START;
                        return Some(i);
                    }
                    *self = if b == b'"' {
                        Quoting::Inside
                    } else {
                        Quoting::Outside {
                            at_field_start: b == delimiter,
                        }
                    };
                    i += 1;
                }
            }
        }
        None
    }
}

fn is_line_end(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// The first quote, CR or LF in `data`. Checks 16-byte blocks without branching first (the
/// compiler turns that into vector compares), since records are mostly plain text.
fn find_quote_or_line_end(data: &[u8]) -> Option<usize> {
    const BLOCK: usize = 16;
    let hit = |b: u8| (b == b'"') | (b == b'\n') | (b == b'\r');
    let mut blocks = data.chunks_exact(BLOCK);
    let mut offset = 0;
    for block in blocks.by_ref() {
        if block.iter().fold(false, |any, &b| any | hit(b)) {
            return block.iter().position(|&b| hit(b)).map(|p| offset + p);
        }
        offset += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&b| hit(b))
        .map(|p| offset + p)
}

/// Passes a CSV byte stream on with every record cut to at most its limit (line end not
/// counted): one for the header (the first record that is not a blank line), one for the
/// records after it. A cut record ends with the bytes that were kept, a quote if a quoted field
/// was open, and the record's own line end (none at the end of the file).
pub(crate) struct RecordLimit<R> {
    inner: R,
    delimiter: u8,
    header_limit: usize,
    record_limit: usize,
    /// No record but blank lines has ended yet: the next one is the header.
    in_header: bool,
    /// `buf[start..end]` is processed output not yet handed on.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    quoting: Quoting,
    /// Bytes of the current record passed on so far (at most its limit).
    record_len: usize,
    /// Dropping the rest of a record that went past the limit.
    dropping: bool,
    /// The cut left a quoted field open: a quote is to be written to close it.
    close_quote: bool,
    /// Input bytes read and output bytes produced, up to the end of the current buffer.
    input_pos: u64,
    output_pos: u64,
    /// Cuts not yet taken by the reader: a few at most, as each one follows a limit's worth of
    /// output and the CSV reader buffers only some KiB ahead.
    cuts: VecDeque<Cut>,
    /// Input bytes minus output bytes over the cuts taken so far.
    taken_delta: i64,
}

impl<R: Read> RecordLimit<R> {
    /// The input's limits ([`MAX_HEADER_BYTES`], [`MAX_RECORD_BYTES`]), reading `inner`
    /// through a buffer of 64 KiB.
    pub fn new(inner: R, delimiter: u8) -> Self {
        Self::with_limits(
            inner,
            delimiter,
            MAX_HEADER_BYTES,
            MAX_RECORD_BYTES,
            64 * 1024,
        )
    }

    pub(crate) fn with_limits(
        inner: R,
        delimiter: u8,
        header_limit: usize,
        record_limit: usize,
        capacity: usize,
    ) -> Self {
        RecordLimit {
            inner,
            delimiter,
            header_limit,
            record_limit,
            in_header: true,
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            quoting: Quoting::START,
            record_len: 0,
            dropping: false,
            close_quote: false,
            input_pos: 0,
            output_pos: 0,
            cuts: VecDeque::new(),
            taken_delta: 0,
        }
    }

    /// The reader underneath (reading from it directly loses this reader's place).
    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The reader underneath; what was read from it and not yet handed on is lost.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// The cut of the record that ends at output offset `record_end`, if it was cut. Call once
    /// per record, in order, with the reader's position after the record: a cut lies a limit's
    /// worth of bytes into its record, so it is before the end of its own record and past the
    /// end of any earlier one.
    pub(crate) fn take_cut(&mut self, record_end: u64) -> Option<Cut> {
        if self.cuts.front()?.output_at > record_end {
            return None;
        }
        let cut = self.cuts.pop_front()?;
        self.taken_delta += cut.dropped as i64 - cut.added as i64;
        Some(cut)
    }

    /// The input offset that output offset `output` of an already read record corresponds to
    /// (exact between records, once their cuts are taken).
    pub(crate) fn input_position(&self, output: u64) -> u64 {
        output.saturating_add_signed(self.taken_delta)
    }

    /// Reads the next chunk of input and processes it in place.
    fn fill(&mut self) -> io::Result<()> {
        let n = loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.start = 0;
        if n == 0 {
            self.eof = true;
            self.end = 0;
            return Ok(());
        }
        self.end = self.process(n);
        self.input_pos += n as u64;
        self.output_pos += self.end as u64;
        Ok(())
    }

    /// Processes `buf[..n]`, moving what is passed on to the front; returns its length. Output
    /// never overtakes input: a closing quote is written only once a dropped byte made room.
    fn process(&mut self, n: usize) -> usize {
        if self.pass_plain_chunk(n) {
            return n;
        }
        let (mut i, mut w) = (0, 0);
        while i < n {
            if self.dropping {
                let found = self
                    .quoting
                    .find_record_end(&self.buf[i..n], self.delimiter);
                // At least one byte is dropped here: the cut is made only before a byte that
                // does not end the record.
                let dropped = found.unwrap_or(n - i);
                i += dropped;
                let close = std::mem::take(&mut self.close_quote);
                if close {
                    self.buf[w] = b'"';
                    w += 1;
                }
                if let Some(cut) = self.cuts.back_mut() {
                    cut.dropped += dropped as u64;
                    cut.added += u64::from(close);
                }
                if found.is_some() {
                    self.buf[w] = self.buf[i];
                    w += 1;
                    i += 1;
                    self.dropping = false;
                    self.end_record(0);
                }
                continue;
            }
            let limit = self.limit();
            let window = (n - i).min(limit - self.record_len);
            if let Some(p) = self
                .quoting
                .find_record_end(&self.buf[i..i + window], self.delimiter)
            {
                if w != i {
                    self.buf.copy_within(i..=i + p, w);
                }
                w += p + 1;
                i += p + 1;
                self.end_record(p);
                continue;
            }
            if w != i {
                self.buf.copy_within(i..i + window, w);
            }
            w += window;
            i += window;
            self.record_len += window;
            if self.record_len < limit || i == n {
                continue;
            }
            // The record holds `limit` bytes: the next one either ends it or is one too many.
            let mut probe = self.quoting;
            if probe
                .find_record_end(&self.buf[i..=i], self.delimiter)
                .is_some()
            {
                self.quoting = probe;
                self.buf[w] = self.buf[i];
                w += 1;
                i += 1;
                self.end_record(0);
                continue;
            }
            self.cut(i, w, limit);
        }
        w
    }

    /// The common case, in bulk: a chunk no longer than the limit and without quotes, outside
    /// quotes, whose first line end comes within the limit, passes whole. Only its first and
    /// last line ends matter: every record between them is shorter than the chunk.
    fn pass_plain_chunk(&mut self, n: usize) -> bool {
        let chunk = &self.buf[..n];
        if self.dropping
            || self.in_header
            || n > self.record_limit
            || !matches!(self.quoting, Quoting::Outside { .. })
            || chunk.contains(&b'"')
        {
            return false;
        }
        let first = chunk.iter().position(|&b| is_line_end(b)).unwrap_or(n);
        if self.record_len + first > self.record_limit {
            return false;
        }
        self.record_len = match chunk.iter().rposition(|&b| is_line_end(b)) {
            Some(last) => n - last - 1,
            None => self.record_len + n,
        };
        if let Some(&last) = chunk.last() {
            self.quoting = Quoting::Outside {
                at_field_start: last == self.delimiter || is_line_end(last),
            };
        }
        true
    }

    /// The limit of the current record.
    fn limit(&self) -> usize {
        if self.in_header {
            self.header_limit
        } else {
            self.record_limit
        }
    }

    /// The current record ended `more` bytes after what was counted of it.
    fn end_record(&mut self, more: usize) {
        // A blank line before the header is no record for csv-core: the header is still to come.
        if self.record_len + more > 0 {
            self.in_header = false;
        }
        self.record_len = 0;
    }

    /// Cuts the current record, which holds `limit` bytes, before `buf[i]`, with `w` bytes of
    /// output so far in this buffer.
    fn cut(&mut self, i: usize, w: usize, limit: usize) {
        self.cuts.push_back(Cut {
            output_at: self.output_pos + w as u64,
            input_start: (self.input_pos + i as u64).saturating_sub(limit as u64),
            dropped: 0,
            added: 0,
        });
        // In a quoted field csv-core would read the line end as text: close the field first.
        // Right after a quote nothing is needed, that quote closes it.
        self.close_quote = self.quoting == Quoting::Inside;
        self.dropping = true;
    }
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // A buffer can come out empty when all of it is dropped: read on.
        while self.start == self.end {
            if self.eof || out.is_empty() {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `input` comes out as with records cut at `limit`, read through a buffer of
    /// `capacity` bytes, and the cuts.
    fn run(input: &[u8], limit: usize, capacity: usize) -> (Vec<u8>, Vec<Cut>) {
        run_with_header_limit(input, limit, limit, capacity)
    }

    fn run_with_header_limit(
        input: &[u8],
        header_limit: usize,
        limit: usize,
        capacity: usize,
    ) -> (Vec<u8>, Vec<Cut>) {
        let mut r = RecordLimit::with_limits(input, b',', header_limit, limit, capacity);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (out, r.cuts.into_iter().collect())
    }

    /// The same at every buffer size from 1 to a little over the input, so that every split of
    /// the input into reads is tried; checks that they all agree.
    fn cut_all_ways(input: &[u8], limit: usize) -> (Vec<u8>, Vec<Cut>) {
        let first = run(input, limit, input.len() + 7);
        for capacity in 1..=input.len() + 1 {
            assert_eq!(run(input, limit, capacity), first, "buffer of {capacity}");
        }
        first
    }

    fn records(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data)
            .byte_records()
            .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
            .collect()
    }

    #[test]
    fn a_long_unquoted_line_is_cut_and_the_next_line_kept() {
        let (out, cuts) = cut_all_ways(b"a,b\nabcdefghij,k\nc,d\n", 8);
        assert_eq!(out, b"a,b\nabcdefgh\nc,d\n");
        assert_eq!(
            cuts,
            [Cut {
                output_at: 12,
                input_start: 4,
                dropped: 4,
                added: 0
            }]
        );
    }

    #[test]
    fn a_cut_inside_a_quoted_field_closes_the_quote_and_skips_its_line_breaks() {
        let input = b"a,b\nx,\"line\nline\nline\",y\nc,d\n";
        let (out, cuts) = cut_all_ways(input, 8);
        assert_eq!(out, b"a,b\nx,\"line\n\"\nc,d\n");
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].added, 1);
        assert_eq!(cuts[0].input_start, 4);
        assert_eq!(
            records(&out),
            [
                vec![b"a".to_vec(), b"b".to_vec()],
                vec![b"x".to_vec(), b"line\n".to_vec()],
                vec![b"c".to_vec(), b"d".to_vec()],
            ]
        );
    }

    #[test]
    fn a_cut_just_after_a_quote_adds_nothing() {
        // The eighth byte is the quote that closes the field: it ends the field on its own.
        let (out, cuts) = cut_all_ways(b"\"abcdef\"ghij\nc,d\n", 8);
        assert_eq!(out, b"\"abcdef\"\nc,d\n");
        assert_eq!(cuts[0].added, 0);
        // A doubled quote at the cut: the first half alone closes the field.
        let (out, _) = cut_all_ways(b"\"abcdef\"\"ghij\"\nc,d\n", 8);
        assert_eq!(records(&out)[0], [b"abcdef".to_vec()]);
        assert_eq!(records(&out)[1], [b"c".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn crlf_line_ends_are_kept_and_not_counted() {
        let (out, cuts) = cut_all_ways(b"a,b\r\n12345678\r\n123456789\r\nc,d\r\n", 8);
        assert_eq!(out, b"a,b\r\n12345678\r\n12345678\r\nc,d\r\n");
        assert_eq!(cuts.len(), 1);
        // A lone CR ends a record for csv-core too.
        let (out, _) = cut_all_ways(b"a,b\r123456789\rc,d\r", 8);
        assert_eq!(out, b"a,b\r12345678\rc,d\r");
    }

    #[test]
    fn several_long_records_are_each_cut_and_placed() {
        let input = b"h\n0123456789\nok\n\"012345\n789\"\nok\nabcdefghijklmnop";
        let (out, cuts) = cut_all_ways(input, 8);
        assert_eq!(out, b"h\n01234567\nok\n\"012345\n\"\nok\nabcdefgh");
        let at: Vec<u64> = cuts.iter().map(|c| c.output_at).collect();
        assert_eq!(at, [10, 22, 35]);
        let starts: Vec<u64> = cuts.iter().map(|c| c.input_start).collect();
        assert_eq!(starts, [2, 16, 32]);
        assert_eq!(
            records(&out).len(),
            records(input).len(),
            "no record is lost or added"
        );
    }

    #[test]
    fn the_header_has_a_limit_of_its_own() {
        let input = b"\r\n\nheader-of-16-bytes\n123456789\nc,d\n";
        let run = |capacity| {
            let mut r = RecordLimit::with_limits(&input[..], b',', 18, 8, capacity);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            (out, r.cuts.len())
        };
        for capacity in 1..=input.len() + 1 {
            assert_eq!(
                run(capacity),
                (b"\r\n\nheader-of-16-bytes\n12345678\nc,d\n".to_vec(), 1),
                "buffer of {capacity}"
            );
        }
        let (out, cuts) = cut_all_ways(b"\nheader-of-16-bytes\nc,d\n", 8);
        assert_eq!(out, b"\nheader-o\nc,d\n");
        assert_eq!(cuts[0].input_start, 1);
    }

    #[test]
    fn a_record_of_exactly_the_limit_is_untouched() {
        for input in [
            &b"h\n12345678\nc,d\n"[..],
            b"h\n12345678\r\nc,d\n",
            b"h\n12345678",
            b"h\n\"12\"\"34\"\nc,d\n",
        ] {
            let (out, cuts) = cut_all_ways(input, 8);
            assert_eq!(out, input);
            assert!(cuts.is_empty(), "{input:?}");
        }
        let (out, cuts) = cut_all_ways(b"h\n123456789", 8);
        assert_eq!(out, b"h\n12345678");
        assert_eq!(cuts.len(), 1);
    }

    #[test]
    fn quoted_line_breaks_below_the_limit_are_untouched() {
        let input = b"a,b\n1,\"two\nlines\"\n\"x\"\"\r\ny\",z\n3,4\n";
        let (out, cuts) = cut_all_ways(input, 16);
        assert_eq!(out, input);
        assert!(cuts.is_empty());
    }

    #[test]
    fn quotes_inside_unquoted_fields_are_text_as_for_csv_core() {
        // The quote in a"b does not open a field: the line ends at its LF, and the long line
        // after it is cut on its own.
        let input = b"1,a\"b,c\n0123456789\n2,x\n";
        let (out, cuts) = cut_all_ways(input, 8);
        assert_eq!(out, b"1,a\"b,c\n01234567\n2,x\n");
        assert_eq!(cuts.len(), 1);
        // After a closing quote, a quote is text too.
        let input = b"\"a\"b\"c\n2,x\n";
        assert_eq!(cut_all_ways(input, 16).0, input);
    }

    #[test]
    fn a_quote_left_open_to_the_end_of_the_file_is_closed() {
        let (out, cuts) = cut_all_ways(b"h\nx,\"abcdefgh\nijk\n", 8);
        assert_eq!(out, b"h\nx,\"abcde\"");
        assert_eq!(cuts[0].dropped, 8);
        assert_eq!(records(&out).len(), 2);
    }

    #[test]
    fn take_cut_pairs_cuts_with_records_and_maps_positions_back() {
        let input = b"h\n0123456789\nok\n";
        let mut r = RecordLimit::with_limits(&input[..], b',', 8, 8, 64);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.take_cut(2), None, "the header ends before the cut");
        let cut = r.take_cut(11).expect("the long record");
        assert_eq!(cut.dropped, 2);
        assert_eq!(r.input_position(11), 13);
        assert_eq!(r.take_cut(14), None);
        assert_eq!(r.input_position(14), input.len() as u64);
    }

    proptest::proptest! {
        /// Whatever the bytes, the cut stream parses into as many records as the input, and
        /// every record that was not cut reads exactly as before.
        #[test]
        fn cutting_keeps_records_and_their_order(
            input in proptest::collection::vec(
                proptest::sample::select(&b"ab,\"\r\n"[..]), 0..80),
            header_limit in 1usize..12,
            limit in 1usize..12,
            capacity in 1usize..20,
        ) {
            let (out, cuts) = run_with_header_limit(&input, header_limit, limit, capacity);
            let (before, after) = (records(&input), records(&out));
            proptest::prop_assert_eq!(before.len(), after.len());
            let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            proptest::prop_assert!(changed <= cuts.len());
            let (whole, none) = run(&input, input.len() + 1, capacity);
            proptest::prop_assert_eq!(whole, input);
            proptest::prop_assert!(none.is_empty());
        }
    }
}
