//! Local files: JSON Lines and CSV in, JSON Lines, CSV and stdout out.

mod json;
mod sink;
mod source;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.source::<source::JsonlSourceConfig>("jsonl");
    r.source::<source::CsvSourceConfig>("csv");
    r.sink::<sink::JsonlSinkConfig>("jsonl");
    r.sink::<sink::CsvSinkConfig>("csv");
    r.sink::<sink::StdoutSinkConfig>("stdout");
}
