//! The business-process rows on PostgreSQL (see [`super::bp`]). Insert-if-absent is
//! `ON CONFLICT DO NOTHING` and a claim is one conditional `UPDATE`, so serve replicas sharing
//! the database never both accept an event or both work on it.

use postgres::Row;

use super::bp::{BpBackend, COLUMNS, RawBpChange, RawBpRow};
use super::postgres::PgBackend;

fn raw(r: &Row) -> RawBpRow {
    RawBpRow {
        key: r.get(0),
        code: r.get(1),
        workflow_id: r.get(2),
        document: r.get(3),
        use_subscription: r.get(4),
        received_ms: r.get(5),
        deadline_ms: r.get(6),
        status: r.get(7),
        attempts: r.get(8),
        deliveries: r.get(9),
        next_at_ms: r.get(10),
        request: r.get(11),
        tokens: r.get(12),
        event_token: r.get(13),
        answer: r.get(14),
        replied_ms: r.get(15),
    }
}

impl BpBackend for PgBackend {
    fn bp_insert(&self, r: &RawBpRow) -> Result<bool, String> {
        let r = r.clone();
        self.worker().call(move |c| {
            let n = c.execute(
                &format!(
                    "INSERT INTO bp_requests({COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                     ON CONFLICT (key) DO NOTHING"
                ),
                &[
                    &r.key,
                    &r.code,
                    &r.workflow_id,
                    &r.document,
                    &r.use_subscription,
                    &r.received_ms,
                    &r.deadline_ms,
                    &r.status,
                    &r.attempts,
                    &r.deliveries,
                    &r.next_at_ms,
                    &r.request,
                    &r.tokens,
                    &r.event_token,
                    &r.answer,
                    &r.replied_ms,
                ],
            )?;
            Ok(n == 1)
        })
    }

    fn bp_claim(
        &self,
        key: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<RawBpRow>, String> {
        let (key, owner) = (key.to_string(), owner.to_string());
        self.worker().call(move |c| {
            let row = c.query_opt(
                &format!(
                    "UPDATE bp_requests SET claimed_by=$2, claim_until_ms=$4,
                         attempts = attempts + (CASE WHEN status='pending' THEN 1 ELSE 0 END)
                     WHERE key=$1 AND status IN ('pending', 'reply') AND next_at_ms <= $3
                       AND (claim_until_ms IS NULL OR claim_until_ms < $3)
                     RETURNING {COLUMNS}"
                ),
                &[&key, &owner, &now_ms, &until_ms],
            )?;
            Ok(row.as_ref().map(raw))
        })
    }

    fn bp_extend(&self, key: &str, owner: &str, until_ms: i64) -> Result<bool, String> {
        let (key, owner) = (key.to_string(), owner.to_string());
        self.worker().call(move |c| {
            let n = c.execute(
                "UPDATE bp_requests SET claim_until_ms=$3 WHERE key=$1 AND claimed_by=$2",
                &[&key, &owner, &until_ms],
            )?;
            Ok(n == 1)
        })
    }

    fn bp_change(&self, key: &str, owner: &str, change: &RawBpChange) -> Result<bool, String> {
        let (key, owner, ch) = (key.to_string(), owner.to_string(), change.clone());
        self.worker().call(move |c| {
            let erase = ch.erase_secrets_at.is_some();
            let deliveries = i64::from(ch.count_delivery);
            let n = c.execute(
                "UPDATE bp_requests SET
                     status = COALESCE($3, status),
                     next_at_ms = COALESCE($4, next_at_ms),
                     tokens = CASE WHEN $8 THEN NULL ELSE COALESCE($5, tokens) END,
                     answer = COALESCE($6, answer),
                     deliveries = deliveries + $7,
                     request = CASE WHEN $8 THEN NULL ELSE request END,
                     event_token = CASE WHEN $8 THEN NULL ELSE event_token END,
                     replied_ms = COALESCE($9, replied_ms),
                     claimed_by = CASE WHEN $10 THEN NULL ELSE claimed_by END,
                     claim_until_ms = CASE WHEN $10 THEN NULL ELSE claim_until_ms END
                 WHERE key=$1 AND claimed_by=$2",
                &[
                    &key,
                    &owner,
                    &ch.status,
                    &ch.next_at_ms,
                    &ch.tokens,
                    &ch.answer,
                    &deliveries,
                    &erase,
                    &ch.erase_secrets_at,
                    &ch.release,
                ],
            )?;
            Ok(n == 1)
        })
    }

    fn bp_due(&self, now_ms: i64, limit: i64) -> Result<Vec<String>, String> {
        self.worker().call(move |c| {
            let rows = c.query(
                "SELECT key FROM bp_requests
                 WHERE status IN ('pending', 'reply') AND next_at_ms <= $1
                   AND (claim_until_ms IS NULL OR claim_until_ms < $1)
                 ORDER BY next_at_ms LIMIT $2",
                &[&now_ms, &limit],
            )?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    fn bp_get(&self, key: &str) -> Result<Option<RawBpRow>, String> {
        let key = key.to_string();
        self.worker().call(move |c| {
            let row = c.query_opt(
                &format!("SELECT {COLUMNS} FROM bp_requests WHERE key=$1"),
                &[&key],
            )?;
            Ok(row.as_ref().map(raw))
        })
    }
}
