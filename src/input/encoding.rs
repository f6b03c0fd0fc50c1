//! The input's character encoding: UTF-8 (the contract's), or Windows-1252, which Excel's
//! "CSV (Comma delimited)" writes on Western Windows.
//!
//! A Windows-1252 file is parsed as CSV byte for byte and each record is decoded to UTF-8
//! after: every byte CSV gives a meaning to (quote, separator, CR, LF) is ASCII, where
//! Windows-1252 and ASCII agree, so the records are the same either way. Decoding after the
//! parse keeps what is measured in the file's bytes in the file's bytes: the record-length
//! limit, the offsets messages give, progress, and the input's SHA-256.

use std::fmt;

use csv::ByteRecord;
use encoding_rs::WINDOWS_1252;

/// How the input's bytes are read as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Utf8,
    /// Excel's "CSV (Comma delimited)" on Western Windows; decoded to UTF-8 as it is read.
    Windows1252,
}

impl Encoding {
    /// The name `--encoding` takes.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
        }
    }
}

/// Bytes Windows-1252 leaves undefined: text that holds one was written in another encoding.
const UNDEFINED_IN_1252: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];

/// The first byte of some text that is not UTF-8, and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignByte {
    /// Offset in the text looked at.
    pub offset: usize,
    pub byte: u8,
}

impl ForeignByte {
    /// The first byte of `text` that is not UTF-8. A character cut short by the end of `text`
    /// counts only when `text` is complete: a file's head may end in the middle of one.
    pub(crate) fn first_in(text: &[u8], complete: bool) -> Option<ForeignByte> {
        match std::str::from_utf8(text) {
            Ok(_) => None,
            Err(e) if e.error_len().is_none() && !complete => None,
            Err(e) => text.get(e.valid_up_to()).map(|&byte| ForeignByte {
                offset: e.valid_up_to(),
                byte,
            }),
        }
    }

    /// The character Windows-1252 makes of the byte; `None` where it leaves it undefined.
    pub(crate) fn in_1252(self) -> Option<char> {
        if UNDEFINED_IN_1252.contains(&self.byte) {
            return None;
        }
        let byte = [self.byte];
        let (text, _) = WINDOWS_1252.decode_without_bom_handling(&byte);
        text.chars().next()
    }
}

/// `byte 0xE9 ('é' in Windows-1252)`, or `byte 0x81` for one Windows-1252 leaves undefined.
impl fmt::Display for ForeignByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte 0x{:02X}", self.byte)?;
        match self.in_1252() {
            Some(c) => write!(f, " ('{c}' in Windows-1252)"),
            None => Ok(()),
        }
    }
}

/// Whether text that is not UTF-8 reads as Windows-1252: it holds none of the bytes
/// Windows-1252 leaves undefined. (Any other byte decodes, so this is all that can be told
/// from bytes alone; a file holding one of them is in another encoding, or damaged.)
pub(crate) fn reads_as_1252(text: &[u8]) -> bool {
    !text.iter().any(|b| UNDEFINED_IN_1252.contains(b))
}

/// The 1-based line of the file that byte `offset` of `head` (the file's first bytes) is on.
pub(crate) fn line_of(head: &[u8], offset: usize) -> u64 {
    let before = head.get(..offset).unwrap_or(head);
    (before.iter().filter(|b| **b == b'\n').count() as u64).saturating_add(1)
}

/// Decodes a record read from a Windows-1252 file to UTF-8, in place (`scratch` is reused
/// from record to record). A record of ASCII only, most of them, is left as it is.
pub(crate) fn decode_1252(record: &mut ByteRecord, scratch: &mut ByteRecord) {
    if record.as_slice().is_ascii() {
        return;
    }
    scratch.clear();
    for cell in record.iter() {
        // Windows-1252 maps every byte: decoding cannot fail.
        let (text, _) = WINDOWS_1252.decode_without_bom_handling(cell);
        scratch.push_field(text.as_bytes());
    }
    scratch.set_position(record.position().cloned());
    std::mem::swap(record, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Latin-1 letters and the Windows-1252 extras (0x80-0x9F) a Western name or note holds.
    const ACCENTED: &str = "éüñøßàçÅÆÖÿ€œŠšŽžŸƒ‚„…†‡ˆ‰‹›‘’“”•–—˜™";

    fn encode_1252(text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = WINDOWS_1252.encode(text);
        assert!(!unmappable, "{text:?} is Windows-1252 text");
        bytes.into_owned()
    }

    fn text_1252() -> impl Strategy<Value = String> {
        let pool: Vec<char> = ACCENTED.chars().chain("aZ 0,;\"'-.@".chars()).collect();
        prop::collection::vec(prop::sample::select(pool), 0..24)
            .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every record of Windows-1252 cells decodes to the text that was encoded, cell for
        /// cell; a record of ASCII only is left as it was.
        #[test]
        fn records_decode_to_the_text_encoded(cells in prop::collection::vec(text_1252(), 1..8)) {
            let mut record = ByteRecord::new();
            for cell in &cells {
                record.push_field(&encode_1252(cell));
            }
            let mut scratch = ByteRecord::new();
            decode_1252(&mut record, &mut scratch);
            let decoded: Vec<&[u8]> = record.iter().collect();
            let expected: Vec<&[u8]> = cells.iter().map(|c| c.as_bytes()).collect();
            prop_assert_eq!(decoded, expected);
        }

        /// Valid UTF-8, cut anywhere, has no foreign byte unless the cut is at the end of the
        /// whole text and splits a character.
        #[test]
        fn utf8_text_cut_anywhere_is_not_foreign(text in "\\PC{0,40}", cut in 0usize..200) {
            let bytes = text.as_bytes();
            let head = &bytes[..cut.min(bytes.len())];
            prop_assert_eq!(ForeignByte::first_in(head, false), None);
            let whole = std::str::from_utf8(head).is_ok();
            prop_assert_eq!(ForeignByte::first_in(head, true).is_none(), whole);
        }

        /// The first non-ASCII byte of Windows-1252 text is found, at its offset, whenever the
        /// text is not UTF-8 by chance, and reads as the character encoded.
        #[test]
        fn windows_1252_text_is_found_at_its_first_accented_letter(
            ascii in "[a-z ,;]{0,30}",
            accented in prop::sample::select(ACCENTED.chars().collect::<Vec<_>>()),
            rest in text_1252(),
        ) {
            let bytes = encode_1252(&format!("{ascii}{accented}{rest}"));
            prop_assume!(std::str::from_utf8(&bytes).is_err());
            let found = ForeignByte::first_in(&bytes, true).expect("a foreign byte");
            prop_assert!(found.offset >= ascii.len());
            prop_assert!(reads_as_1252(&bytes));
            prop_assert!(found.in_1252().is_some());
            if let Some(after) = bytes.get(ascii.len() + 1) {
                // Followed by ASCII, the letter itself is what UTF-8 stumbles on.
                if after.is_ascii() {
                    prop_assert_eq!(found.offset, ascii.len());
                    prop_assert_eq!(found.in_1252(), Some(accented));
                }
            }
        }
    }

    #[test]
    fn undefined_bytes_are_not_windows_1252() {
        for byte in UNDEFINED_IN_1252 {
            let found = ForeignByte::first_in(&[b'a', byte], true).unwrap();
            assert_eq!(found.in_1252(), None);
            assert_eq!(found.to_string(), format!("byte 0x{byte:02X}"));
            assert!(!reads_as_1252(&[b'a', byte]));
        }
        let e_acute = ForeignByte {
            offset: 0,
            byte: 0xE9,
        };
        assert_eq!(e_acute.to_string(), "byte 0xE9 ('é' in Windows-1252)");
        assert_eq!(line_of(b"a\nb\r\ncd", 5), 3);
        assert_eq!(line_of(b"abc", 0), 1);
    }
}
