//! CPU work over a batch's records, spread over the machine's cores.
//!
//! Steps that only compute (templates, filters, fingerprints) treat each record on its own, so
//! the records of a batch can be worked on at once: a 100,000-record run spends most of its
//! CPU time there. Results keep the records' order; what a step does to one record never
//! depends on another, so the outcome is the same as one record after the other.

use rayon::prelude::*;

use super::Item;

/// Records per piece of work: enough to outweigh handing the piece to another thread.
const MIN_PER_TASK: usize = 8;

/// `f` on every pending item.
pub fn for_each_pending<F>(items: &mut [Item], f: F)
where
    F: Fn(&mut Item) + Send + Sync,
{
    items
        .par_iter_mut()
        .with_min_len(MIN_PER_TASK)
        .filter(|i| i.pending())
        .for_each(f);
}

/// `f` of every input, in the inputs' order.
pub fn map<T, R, F>(inputs: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Send + Sync,
{
    inputs
        .par_iter()
        .with_min_len(MIN_PER_TASK)
        .map(f)
        .collect()
}

/// Frees `value` on another thread: the records of a finished batch hold every row they were
/// made from, and freeing them was a tenth of a large run's time on the thread that reads and
/// checkpoints.
pub fn drop_elsewhere<T: Send + 'static>(value: T) {
    rayon::spawn(move || drop(value));
}
