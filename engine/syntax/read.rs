//! Reading a configuration file: a bounded read, and text that is not UTF-8 reported at the
//! byte where it stops being text.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::diag::Diagnostic;
use super::node::Pos;

/// The largest pipeline file read; the shipped ones are a few kilobytes.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// The text of `path`, or a located problem: unreadable (1:1), too large (where the limit
/// falls), not UTF-8 (at the first byte that is not).
pub fn read_source(path: &Path, file: &Arc<str>) -> Result<String, Diagnostic> {
    let at_start = |message: String| Diagnostic::at_pos(file, Pos { line: 1, col: 1 }, 1, message);
    let handle =
        std::fs::File::open(path).map_err(|e| at_start(format!("cannot read file: {e}")))?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| at_start(format!("cannot read file: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        let pos = pos_of_byte(&bytes, MAX_FILE_BYTES);
        return Err(Diagnostic::at_pos(
            file,
            pos,
            1,
            format!(
                "the file is larger than {} MiB; a pipeline file is at most that (is this the right file?)",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let pos = pos_of_byte(bytes, bad);
        Diagnostic::at_pos(
            file,
            pos,
            1,
            format!(
                "the file is not UTF-8 text: byte 0x{:02X} here (save the file as UTF-8)",
                bytes[bad]
            ),
        )
    })
}

/// Line and column (in characters) of byte `offset`.
fn pos_of_byte(bytes: &[u8], offset: usize) -> Pos {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos { line, col }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_byte_is_located() {
        let dir = std::env::temp_dir().join(format!("etl-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(&path, b"name: t\nsource: \xc3\xa9\xff\n").unwrap();
        let d = read_source(&path, &Arc::from("p.yaml")).unwrap_err();
        assert_eq!(d.span.start, Pos { line: 2, col: 10 });
        assert!(d.message.contains("0xFF"), "{}", d.message);
        std::fs::remove_dir_all(&dir).ok();
    }
}
