//! The business-process rows on SQLite (see [`super::bp`]).

use rusqlite::{OptionalExtension, Row, params};

use super::bp::{BpBackend, COLUMNS, RawBpChange, RawBpRow};
use super::sqlite::{SqliteBackend, db};

fn raw(r: &Row) -> rusqlite::Result<RawBpRow> {
    Ok(RawBpRow {
        key: r.get(0)?,
        code: r.get(1)?,
        workflow_id: r.get(2)?,
        document: r.get(3)?,
        use_subscription: r.get(4)?,
        received_ms: r.get(5)?,
        deadline_ms: r.get(6)?,
        status: r.get(7)?,
        attempts: r.get(8)?,
        deliveries: r.get(9)?,
        next_at_ms: r.get(10)?,
        request: r.get(11)?,
        tokens: r.get(12)?,
        event_token: r.get(13)?,
        answer: r.get(14)?,
        replied_ms: r.get(15)?,
    })
}

impl BpBackend for SqliteBackend {
    fn bp_insert(&self, r: &RawBpRow) -> Result<bool, String> {
        let n = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO bp_requests({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
                     ON CONFLICT(key) DO NOTHING"
                ),
                params![
                    r.key,
                    r.code,
                    r.workflow_id,
                    r.document,
                    r.use_subscription,
                    r.received_ms,
                    r.deadline_ms,
                    r.status,
                    r.attempts,
                    r.deliveries,
                    r.next_at_ms,
                    r.request,
                    r.tokens,
                    r.event_token,
                    r.answer,
                    r.replied_ms
                ],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn bp_claim(
        &self,
        key: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<RawBpRow>, String> {
        self.conn()
            .query_row(
                &format!(
                    "UPDATE bp_requests SET claimed_by=?2, claim_until_ms=?4,
                         attempts = attempts + (CASE WHEN status='pending' THEN 1 ELSE 0 END)
                     WHERE key=?1 AND status IN ('pending', 'reply') AND next_at_ms <= ?3
                       AND (claim_until_ms IS NULL OR claim_until_ms < ?3)
                     RETURNING {COLUMNS}"
                ),
                params![key, owner, now_ms, until_ms],
                raw,
            )
            .optional()
            .map_err(db)
    }

    fn bp_extend(&self, key: &str, owner: &str, until_ms: i64) -> Result<bool, String> {
        let n = self
            .conn()
            .execute(
                "UPDATE bp_requests SET claim_until_ms=?3 WHERE key=?1 AND claimed_by=?2",
                params![key, owner, until_ms],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn bp_change(&self, key: &str, owner: &str, c: &RawBpChange) -> Result<bool, String> {
        let erase = c.erase_secrets_at.is_some();
        let n = self
            .conn()
            .execute(
                "UPDATE bp_requests SET
                     status = COALESCE(?3, status),
                     next_at_ms = COALESCE(?4, next_at_ms),
                     tokens = CASE WHEN ?8 THEN NULL ELSE COALESCE(?5, tokens) END,
                     answer = COALESCE(?6, answer),
                     deliveries = deliveries + ?7,
                     request = CASE WHEN ?8 THEN NULL ELSE request END,
                     event_token = CASE WHEN ?8 THEN NULL ELSE event_token END,
                     replied_ms = COALESCE(?9, replied_ms),
                     claimed_by = CASE WHEN ?10 THEN NULL ELSE claimed_by END,
                     claim_until_ms = CASE WHEN ?10 THEN NULL ELSE claim_until_ms END
                 WHERE key=?1 AND claimed_by=?2",
                params![
                    key,
                    owner,
                    c.status,
                    c.next_at_ms,
                    c.tokens,
                    c.answer,
                    i64::from(c.count_delivery),
                    erase,
                    c.erase_secrets_at,
                    c.release
                ],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn bp_due(&self, now_ms: i64, limit: i64) -> Result<Vec<String>, String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key FROM bp_requests
                 WHERE status IN ('pending', 'reply') AND next_at_ms <= ?1
                   AND (claim_until_ms IS NULL OR claim_until_ms < ?1)
                 ORDER BY next_at_ms LIMIT ?2",
            )
            .map_err(db)?;
        stmt.query_map(params![now_ms, limit], |r| r.get(0))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    fn bp_get(&self, key: &str) -> Result<Option<RawBpRow>, String> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM bp_requests WHERE key=?1"),
                [key],
                raw,
            )
            .optional()
            .map_err(db)
    }
}
