//! Protocol-free steps: mappings, filters, change detection.

mod filter;
mod map;
mod skip_unchanged;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.step::<map::MapConfig>("map");
    r.step::<filter::FilterConfig>("filter");
    r.step::<skip_unchanged::SkipUnchangedConfig>("skip_unchanged");
}
