//! CPU work over a batch's records, spread over the machine's cores.
//!
//! Steps that only compute (templates, filters, fingerprints) treat each record on its own, so
//! the records of a batch can be worked on at once: a 100,000-record run spends most of its
//! CPU time there. Results keep the records' order; what a step does to one record never
//! depends on another, so the outcome is the same as one record after the other.
//!
//! The calling thread takes the first share itself and a pool of one thread less than the
//! cores takes the others: idle pool threads spin for a while between calls, and a pool as
//! large as the machine took the CPU the calling thread needed between the calls (reading,
//! checkpointing, printing).

use std::sync::LazyLock;

use rayon::{ThreadPool, ThreadPoolBuilder};

use super::Item;

/// Records per share: enough to outweigh handing the share to another thread.
const MIN_PER_SHARE: usize = 16;

fn cores() -> usize {
    static CORES: LazyLock<usize> =
        LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    *CORES
}

static POOL: LazyLock<ThreadPool> = LazyLock::new(|| {
    ThreadPoolBuilder::new()
        .num_threads(cores().saturating_sub(1).max(1))
        .thread_name(|n| format!("etl-cpu-{n}"))
        .build()
        .expect("a thread pool for the batch's records")
});

/// How many records each share gets (all of them when one share is enough).
fn share(len: usize) -> usize {
    let shares = cores().min(len / MIN_PER_SHARE).max(1);
    len.div_ceil(shares).max(1)
}

/// `f` on every pending item.
pub fn for_each_pending<F>(items: &mut [Item], f: F)
where
    F: Fn(&mut Item) + Sync,
{
    let run = |part: &mut [Item]| part.iter_mut().filter(|i| i.pending()).for_each(&f);
    let size = share(items.len());
    let mut parts = items.chunks_mut(size);
    let Some(first) = parts.next() else {
        return;
    };
    POOL.in_place_scope(|s| {
        for part in parts {
            s.spawn(move |_| run(part));
        }
        run(first);
    });
}

/// `f` of every input, in the inputs' order.
pub fn map<T, R, F>(inputs: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let run = |part: &[T]| part.iter().map(&f).collect::<Vec<R>>();
    let size = share(inputs.len());
    let parts: Vec<&[T]> = inputs.chunks(size).collect();
    let mut outs: Vec<Vec<R>> = parts.iter().map(|_| Vec::new()).collect();
    let Some((first_out, other_outs)) = outs.split_first_mut() else {
        return Vec::new();
    };
    POOL.in_place_scope(|s| {
        for (part, out) in parts[1..].iter().zip(other_outs) {
            s.spawn(move |_| *out = run(part));
        }
        *first_out = run(parts[0]);
    });
    outs.into_iter().flatten().collect()
}

/// Frees `value` on another thread: the records of a finished batch hold every row they were
/// made from, and freeing them was a tenth of a large run's time on the thread that reads and
/// checkpoints.
pub fn drop_elsewhere<T: Send + 'static>(value: T) {
    POOL.spawn(move || drop(value));
}
