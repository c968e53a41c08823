//! Hook writes that wait for a full batch (Bitrix24 status write-backs, 50 to a request), and
//! the records that wait for them.
//!
//! A hook sink that declares [`Batching`](super::Batching) does not write batch by batch: its
//! writes queue up per group and go out when a full request's worth waits (and at the end of
//! the run), while the executor reads and writes the next records. A record is done, and its
//! cursor and source fingerprint may be committed, only once every one of its writes has been
//! answered; records are completed in source order, so the checkpoint is always the longest
//! prefix of done records and the cursor trails behind the writes still waiting.

use std::collections::VecDeque;
use std::sync::Arc;

use indexmap::IndexMap;

use super::{Fatal, Item, RunCtx, Sink, Write};
use crate::secrets::redact;

/// One hook write about to be queued: which item of its batch it is for, and where it goes.
pub(super) struct Deferrable {
    pub index: usize,
    pub group: String,
    pub size: usize,
    pub sink: Arc<dyn Sink>,
    pub label: String,
    pub write: Write,
    /// The write's fingerprint, committed once it is confirmed (`None`: not remembered).
    pub fingerprint: Option<(String, String)>,
}

/// A batch of records whose sinks have run, with the hook writes they still wait for.
pub(super) struct Prepared {
    pub items: Vec<Item>,
    pub writes: Vec<Deferrable>,
}

/// A queued write; `seq` names its record among all records of the run.
struct Queued {
    seq: u64,
    label: String,
    write: Write,
    fingerprint: Option<(String, String)>,
}

struct Group {
    sink: Arc<dyn Sink>,
    size: usize,
    writes: VecDeque<Queued>,
}

/// Writes to send in one go through one sink.
pub(super) struct Job {
    sink: Arc<dyn Sink>,
    writes: Vec<Queued>,
}

/// What a sent write came back with: its record, and the failure reason if it failed.
pub(super) struct Answer {
    seq: u64,
    failed: Option<String>,
}

/// Records waiting for their hook writes, oldest first, and the queued writes per group.
#[derive(Default)]
pub(super) struct Deferred {
    /// Each record with the number of its writes not answered yet.
    waiting: VecDeque<(Item, usize)>,
    /// `seq` of the record at the front of `waiting`.
    first_seq: u64,
    groups: IndexMap<String, Group>,
}

impl Deferred {
    /// Take in a prepared batch: its records join the queue, its writes their groups.
    pub fn admit(&mut self, prepared: Prepared) {
        let base = self.first_seq + self.waiting.len() as u64;
        let mut open = vec![0usize; prepared.items.len()];
        for d in prepared.writes {
            open[d.index] += 1;
            let group = self.groups.entry(d.group).or_insert_with(|| Group {
                sink: d.sink,
                size: d.size.max(1),
                writes: VecDeque::new(),
            });
            group.writes.push_back(Queued {
                seq: base + d.index as u64,
                label: d.label,
                write: d.write,
                fingerprint: d.fingerprint,
            });
        }
        self.waiting.extend(prepared.items.into_iter().zip(open));
    }

    /// Full requests' worth of writes, ready to go out.
    pub fn take_full(&mut self) -> Vec<Job> {
        self.take(false)
    }

    /// Everything still queued (the end of the run): the last request of a group may be short.
    pub fn take_all(&mut self) -> Vec<Job> {
        self.take(true)
    }

    fn take(&mut self, all: bool) -> Vec<Job> {
        let mut jobs = Vec::new();
        for group in self.groups.values_mut() {
            while group.writes.len() >= group.size || (all && !group.writes.is_empty()) {
                let n = group.writes.len().min(group.size);
                jobs.push(Job {
                    sink: group.sink.clone(),
                    writes: group.writes.drain(..n).collect(),
                });
            }
        }
        jobs
    }

    /// Apply the answers: a failed write fails its record, whose effects are then incomplete.
    pub fn apply(&mut self, answers: Vec<Answer>) {
        for a in answers {
            let at = a.seq.checked_sub(self.first_seq).map(|n| n as usize);
            let Some((item, open)) = at.and_then(|n| self.waiting.get_mut(n)) else {
                continue;
            };
            *open = open.saturating_sub(1);
            if let Some(reason) = a.failed {
                item.fail(reason);
                item.hook_failed = true;
            }
        }
    }

    /// The records at the front whose writes are all answered, in source order.
    pub fn take_done(&mut self) -> Vec<Item> {
        let mut done = Vec::new();
        while self.waiting.front().is_some_and(|(_, open)| *open == 0) {
            if let Some((item, _)) = self.waiting.pop_front() {
                done.push(item);
                self.first_seq += 1;
            }
        }
        done
    }
}

/// Send the jobs one after another; each confirmed write's fingerprint is committed at once,
/// also those confirmed before a failure that ends the run.
pub(super) async fn flush(jobs: Vec<Job>, ctx: &RunCtx) -> Result<Vec<Answer>, Fatal> {
    let mut answers = Vec::new();
    for job in jobs {
        let writes: Vec<Write> = job.writes.iter().map(|q| q.write.clone()).collect();
        let written = job.sink.write_confirmed(&writes, ctx).await;
        let mut confirmed = Vec::new();
        for (q, result) in job.writes.into_iter().zip(written.results) {
            let failed = match result {
                Ok(_) => {
                    if let Some((scope, hash)) = q.fingerprint {
                        confirmed.push((scope, q.write.key, hash));
                    }
                    None
                }
                Err(reason) => Some(format!("{}: {}", q.label, redact(&reason))),
            };
            answers.push(Answer { seq: q.seq, failed });
        }
        if let (Some(store), false) = (&ctx.state, confirmed.is_empty()) {
            store
                .commit(&ctx.pipeline, &confirmed, None)
                .map_err(|e| Fatal::unavailable("state", e))?;
        }
        if let Some(fatal) = written.stopped {
            return Err(fatal);
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Batching, Record};
    use async_trait::async_trait;
    use minijinja::value::Value;
    use serde_json::{Value as Json, json};

    struct Nothing;

    #[async_trait]
    impl Sink for Nothing {
        fn prepare(&self, _: &Item, _: &Value) -> Result<Option<Write>, String> {
            Ok(None)
        }
        async fn write(&self, w: &[Write], _: &RunCtx) -> Result<Vec<Result<Json, String>>, Fatal> {
            Ok(w.iter().map(|_| Ok(Json::Null)).collect())
        }
        fn batching(&self) -> Option<Batching> {
            Some(Batching {
                group: "g".into(),
                size: 3,
            })
        }
    }

    fn batch(keys: &[&str], with_write: &[usize]) -> Prepared {
        let sink: Arc<dyn Sink> = Arc::new(Nothing);
        Prepared {
            items: keys
                .iter()
                .map(|k| Item::new(Record::new(*k, json!({}))))
                .collect(),
            writes: with_write
                .iter()
                .map(|&index| Deferrable {
                    index,
                    group: "g".into(),
                    size: 3,
                    sink: sink.clone(),
                    label: "on_success[0]".into(),
                    write: Write {
                        index,
                        key: keys[index].into(),
                        payload: Arc::new(json!({})),
                    },
                    fingerprint: None,
                })
                .collect(),
        }
    }

    #[test]
    fn writes_go_out_in_full_groups_and_records_complete_in_order() {
        let mut d = Deferred::default();
        d.admit(batch(&["1", "2"], &[0, 1]));
        assert!(
            d.take_full().is_empty(),
            "two of three: nothing to send yet"
        );
        assert!(d.take_done().is_empty(), "both wait for their writes");
        // "3" has no write but follows records that wait: it waits too.
        d.admit(batch(&["3", "4", "5"], &[1, 2]));
        let jobs = d.take_full();
        assert_eq!(jobs.len(), 1);
        let seqs: Vec<u64> = jobs[0].writes.iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [0, 1, 3]);
        d.apply(vec![
            Answer {
                seq: 0,
                failed: None,
            },
            Answer {
                seq: 1,
                failed: Some("refused".into()),
            },
            Answer {
                seq: 3,
                failed: None,
            },
        ]);
        let done: Vec<String> = d.take_done().into_iter().map(|i| i.record.key).collect();
        assert_eq!(done, ["1", "2", "3", "4"]);
        let last = d.take_all();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].writes.len(), 1, "the end of the run sends the rest");
        d.apply(vec![Answer {
            seq: 4,
            failed: None,
        }]);
        assert_eq!(d.take_done().len(), 1);
    }

    #[test]
    fn a_failed_write_marks_the_record_incomplete() {
        let mut d = Deferred::default();
        d.admit(batch(&["1"], &[0]));
        d.apply(vec![Answer {
            seq: 0,
            failed: Some("on_success[0]: refused".into()),
        }]);
        let item = d.take_done().pop().unwrap();
        assert!(item.hook_failed);
        assert_eq!(item.outcome.reason(), Some("on_success[0]: refused"));
    }
}
