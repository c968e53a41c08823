//! A progress line on a terminal; nothing at all when stderr is not a TTY (cron, CI).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress(Option<ProgressBar>);

impl Progress {
    pub fn new(pipeline: &str, enabled: bool) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {pos} records ({per_sec}) {msg}")
                .expect("template"),
        );
        bar.set_prefix(pipeline.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress(Some(bar))
    }

    pub fn advance(&self, records: u64, counts: &str) {
        if let Some(bar) = &self.0 {
            bar.inc(records);
            bar.set_message(counts.to_string());
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
