//! Excel workbooks (rust_xlsxwriter): one workbook per run, written row by row in constant-memory
//! mode and saved when the run finishes.

mod sink;

use crate::config::Registry;

pub use sink::sheet_name;

pub fn register(r: &mut Registry) {
    r.sink::<sink::XlsxSinkConfig>("xlsx");
}
