//! Keyset rounds: how `bitrix24.list` reads a full export or one incremental window at
//! Bitrix24's physical limit (50 rows a command, 50 commands a request, no COUNT on pages).
//!
//! A round starts with one *probe* request over the rows left (filter plus `>ID after`, ID
//! ascending): `CHAIN_PAGES` chained pages read the first rows, and `PROBES` one-row offset
//! probes (`start = 50·CHAIN_PAGES − 1 + 2,500·k`, select ID only) return the ID that ends each
//! following block of exactly 2,500 rows. Each block `(b[k-1], b[k]]` is then one request of
//! 50 chained pages bounded by `<=ID b[k]`, and the blocks of a round go out concurrently (the
//! client's GCRA bucket, a little under the portal's, decides how many are in flight, so the
//! portal never answers QUERY_LIMIT_EXCEEDED). A round of 1 + P requests reads
//! 50·C + 2,500·P rows: never less than 2,450 rows per request, whatever the data look like.
//! A 100,000-row read is 41 requests.
//!
//! Why nothing is skipped or read twice: blocks are disjoint ID ranges that together cover
//! `(after, b[P]]`, and a block is read by `>ID` keyset until a short page or its last ID, so it
//! needs no counts to be complete: a block whose rows moved on (modified, so now outside the
//! filter) just ends early, and a block that gained rows reads on in another request. The
//! probes only decide how the work is cut, never what is delivered.
use futures::future::{BoxFuture, try_join_all};
use serde_json::{Value as Json, json};

use super::raw::{RawRow, pick, rows_in};
use super::{ListSource, PAGE, as_text, unavailable};
use crate::connectors::bitrix24::client::{BatchResult, Kind};
use crate::runtime::Fatal;

/// Chained pages in a round's probe request (with `PROBES` probes and an optional window probe).
const CHAIN_PAGES: usize = 25;
/// Offset probes per round: blocks of 2,500 rows read after the probe request.
const PROBES: usize = 24;
/// Rows of a block: one request of 50 chained pages.
const BLOCK: usize = 2_500;

/// What a round read.
pub(super) struct Round {
    /// Rows in ascending ID order, as they came.
    pub rows: Vec<RawRow>,
    /// No rows are left after these (within the filter).
    pub complete: bool,
    /// The ID to continue after when not complete.
    pub last_id: String,
    /// The window probe found more rows than a window may hold: the date at that offset.
    pub window_too_big: Option<String>,
}

/// A probed round, and the blocks (`(after, upto]` ID ranges) still to read for it.
pub(super) type Probed = (Round, Vec<(String, Option<String>)>);

/// A window probe: the (field, ID) ascending row at this offset, if any, ends the window.
pub(super) struct WindowProbe {
    pub field: String,
    pub offset: usize,
}

impl ListSource {
    fn id_filter(
        &self,
        extra: &[(String, Json)],
        after: Json,
        upto: Option<&str>,
    ) -> Vec<(String, Json)> {
        let id = &self.cfg.id_field;
        let mut f = extra.to_vec();
        f.push((format!(">{id}"), after));
        if let Some(hi) = upto {
            f.push((format!("<={id}"), Json::from(hi)));
        }
        f
    }

    /// Chained keyset pages `{prefix}{j}` after `after` (and up to `upto`).
    fn chain(
        &self,
        prefix: &str,
        pages: usize,
        extra: &[(String, Json)],
        after: &str,
        upto: Option<&str>,
    ) -> Vec<(String, String, Json)> {
        let id = self.cfg.id_field.clone();
        (0..pages)
            .map(|j| {
                let from = if j == 0 {
                    Json::from(after)
                } else {
                    self.reference(&format!("{prefix}{}", j - 1), &id)
                };
                let filter = self.id_filter(extra, from, upto);
                let params = self.params(&filter, Some(json!({ id.clone(): "ASC" })), -1);
                (format!("{prefix}{j}"), self.cfg.method.clone(), params)
            })
            .collect()
    }

    /// Reads the rows of `(after, upto]` (to the end when `upto` is `None`) by chained keyset
    /// requests until a short page or the row `upto`.
    async fn read_block(
        &self,
        extra: &[(String, Json)],
        after: String,
        upto: Option<String>,
    ) -> Result<Vec<RawRow>, Fatal> {
        let (mut rows, mut after) = (Vec::new(), after);
        loop {
            let commands = self.chain("p", PAGE, extra, &after, upto.as_deref());
            let mut result = self
                .client
                .batch_raw(&commands, true, Kind::Read)
                .await
                .map_err(unavailable)?;
            for (key, _, _) in &commands {
                // Refused for now (operating time): the next request continues from here.
                let Some(page) = self.take_page(&mut result, key)? else {
                    break;
                };
                let short = page.len() < PAGE;
                if let Some(last) = page.last() {
                    after = self.raw_id(last);
                }
                rows.extend(page);
                if short || upto.as_deref() == Some(after.as_str()) {
                    return Ok(rows);
                }
            }
        }
    }

    /// The IDs that end the blocks, the rows of the last probe page that found one, and
    /// whether a probe found nothing (so fewer than a block's rows follow the last end).
    fn block_ends(
        &self,
        result: &BatchResult<RawRow>,
    ) -> Result<(Vec<String>, usize, bool), Fatal> {
        let (mut ends, mut last_probe_rows, mut probes_ended) = (Vec::new(), 0, false);
        for k in 1..=PROBES {
            let Some(page) = self.page(result, &format!("q{k}"))? else {
                break;
            };
            let page = rows_in(page, self.cfg.items.as_deref());
            let Some(first) = page.first() else {
                probes_ended = true;
                break;
            };
            ends.push(self.raw_id(first));
            last_probe_rows = page.len();
        }
        Ok((ends, last_probe_rows, probes_ended))
    }

    /// One round after `after`: the probe request, then its blocks concurrently.
    pub(super) async fn read_round(
        &self,
        extra: &[(String, Json)],
        after: &str,
        window: Option<&WindowProbe>,
    ) -> Result<Round, Fatal> {
        let (mut round, blocks) = self.probe(extra, after, window).await?;
        for rows in self.read_blocks(extra, blocks, &|rows| rows).await? {
            round.rows.extend(rows);
        }
        Ok(round)
    }

    /// The rounds from a probed one to the end: each round's blocks are read while the next
    /// round's probe request goes out (it needs only this round's last block end), so a
    /// 100,000-row window waits for one probe answer, not two. Each request's rows are handed
    /// to `keep` as they come (ascending ID order within a block).
    pub(super) fn read_rounds<'a, T: Send + 'a>(
        &'a self,
        extra: &'a [(String, Json)],
        (round, blocks): Probed,
        keep: &'a (dyn Fn(Vec<RawRow>) -> Vec<T> + Sync),
    ) -> BoxFuture<'a, Result<Vec<T>, Fatal>> {
        Box::pin(async move {
            let mut kept = keep(round.rows);
            let read = self.read_blocks(extra, blocks, keep);
            if round.complete {
                kept.extend(read.await?.into_iter().flatten());
                return Ok(kept);
            }
            let next = async {
                let probed = self.probe(extra, &round.last_id, None).await?;
                self.read_rounds(extra, probed, keep).await
            };
            let (read, rest) = futures::try_join!(read, next)?;
            kept.extend(read.into_iter().flatten());
            kept.extend(rest);
            Ok(kept)
        })
    }

    async fn read_blocks<T>(
        &self,
        extra: &[(String, Json)],
        blocks: Vec<(String, Option<String>)>,
        keep: &(dyn Fn(Vec<RawRow>) -> Vec<T> + Sync),
    ) -> Result<Vec<Vec<T>>, Fatal> {
        try_join_all(blocks.into_iter().map(|(after, upto)| async move {
            self.read_block(extra, after, upto).await.map(keep)
        }))
        .await
    }

    /// A round's probe request: the rows of its chained pages, and the blocks to read after
    /// them (`(after, upto]` ID ranges). `round.last_id` is where the next round starts.
    pub(super) async fn probe(
        &self,
        extra: &[(String, Json)],
        after: &str,
        window: Option<&WindowProbe>,
    ) -> Result<Probed, Fatal> {
        let id = self.cfg.id_field.clone();
        let mut commands = Vec::new();
        if let Some(w) = window {
            let mut params = self.params(
                extra,
                Some(json!({ w.field.clone(): "ASC", id.clone(): "ASC" })),
                w.offset as i64,
            );
            params["select"] = json!([id.clone(), w.field.clone()]);
            commands.push(("w".to_string(), self.cfg.method.clone(), params));
        }
        for k in 1..=PROBES {
            let offset = PAGE * CHAIN_PAGES - 1 + BLOCK * k;
            let filter = self.id_filter(extra, Json::from(after), None);
            let mut params =
                self.params(&filter, Some(json!({ id.clone(): "ASC" })), offset as i64);
            params["select"] = json!([id.clone()]);
            commands.push((format!("q{k}"), self.cfg.method.clone(), params));
        }
        let chain_pages = CHAIN_PAGES + usize::from(window.is_none());
        commands.extend(self.chain("c", chain_pages, extra, after, None));
        // halt=1: the probes come first and never fail; the chain stops at its first error.
        let mut result = self
            .client
            .batch_raw(&commands, true, Kind::Read)
            .await
            .map_err(unavailable)?;

        let mut round = Round {
            rows: Vec::new(),
            complete: false,
            last_id: after.to_string(),
            window_too_big: None,
        };
        if let Some(w) = window
            && let Some(page) = self.page(&result, "w")?
            && let Some(row) = rows_in(page, self.cfg.items.as_deref()).first()
        {
            let [date] = pick(row, [w.field.as_str()]);
            round.window_too_big = Some(as_text(&date));
            return Ok((round, Vec::new()));
        }
        for j in 0..chain_pages {
            let Some(page) = self.take_page(&mut result, &format!("c{j}"))? else {
                return Ok((round, Vec::new())); // refused for now: the next round continues
            };
            let short = page.len() < PAGE;
            if let Some(last) = page.last() {
                round.last_id = self.raw_id(last);
            }
            round.rows.extend(page);
            if short {
                round.complete = true;
                return Ok((round, Vec::new()));
            }
        }
        // Block ends from the probes; the chain's offsets are exactly those before the first.
        let (ends, last_probe_rows, probes_ended) = self.block_ends(&result)?;
        let mut blocks: Vec<(String, Option<String>)> = Vec::new();
        let mut from = round.last_id.clone();
        for end in &ends {
            blocks.push((from.clone(), Some(end.clone())));
            from = end.clone();
        }
        // After the last end: nothing when its probe page was short with only that row, fewer
        // than a block when the next probe found nothing; otherwise the next round reads on.
        let nothing_after = !ends.is_empty() && last_probe_rows == 1;
        let less_than_a_block = probes_ended || (!ends.is_empty() && last_probe_rows < PAGE);
        if !nothing_after && less_than_a_block {
            blocks.push((from.clone(), None));
        }
        round.complete = nothing_after || less_than_a_block;
        round.last_id = from;
        Ok((round, blocks))
    }
}
