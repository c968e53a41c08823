//! Working on requests: claim a due row, run its pipeline (or retry later), store the answer,
//! deliver the reply (or retry later). Every piece of work starts from the row in the state
//! store, so a request accepted here, one a killed serve left, and one whose retry has come are
//! handled alike.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::Bp;
use super::journal::Settled;
use super::run::{self, RunEnd};
use crate::connectors::bitrix24::app::request::UserTokens;
use crate::connectors::bitrix24::app::{reply, take_renewed_tokens};
use crate::runtime::error::ConnectorError;
use crate::state::bp::{BpNext, BpRow, BpStatus, now_ms};

/// How often the store is asked for due work (retries whose time has come, work a killed serve
/// left, replies waiting for Bitrix24).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// After this long a reply that could not be sent is given up (the workflow has long moved on
/// or timed out).
const REPLY_GIVE_UP_MS: i64 = 24 * 3600 * 1000;

/// Look for due work for as long as serve runs.
pub async fn sweep(bp: Arc<Bp>) {
    loop {
        match bp.store(|s| s.bp_due(256)).await {
            Ok(keys) => keys.into_iter().for_each(|key| spawn(&bp, key)),
            Err(e) => tracing::warn!("cannot look for business-process work: {e}"),
        }
        tokio::time::sleep(SWEEP_INTERVAL).await;
    }
}

/// Work on `key` in the background, once the pool has room, unless it is in hand here already.
pub fn spawn(bp: &Arc<Bp>, key: String) {
    let fresh = bp
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone());
    if !fresh {
        return;
    }
    let bp = bp.clone();
    tokio::spawn(async move {
        if let Ok(_permit) = bp.pool.clone().acquire_owned().await
            && let Err(e) = work(&bp, &key).await
        {
            tracing::error!(event_key = key, "business-process request: {e}");
        }
        bp.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    });
}

async fn work(bp: &Arc<Bp>, key: &str) -> Result<(), String> {
    let (k, owner, ttl) = (key.to_string(), bp.owner.clone(), bp.claim_ttl_ms());
    // Someone else has it, or it is not due (done meanwhile): nothing to do here.
    let Some(row) = bp.store(move |s| s.bp_claim(&k, &owner, ttl)).await? else {
        return Ok(());
    };
    let heartbeat = tokio::spawn(keep_claim(bp.clone(), key.to_string()));
    let done = match row.status {
        BpStatus::Pending => run_then_reply(bp, row).await,
        BpStatus::Reply => deliver(bp, row).await,
        BpStatus::Replied | BpStatus::Undeliverable => Ok(()),
    };
    heartbeat.abort();
    done
}

/// Renew the claim while the work goes on (a third of its lifetime apart).
async fn keep_claim(bp: Arc<Bp>, key: String) {
    let every = bp.settings.claim_ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        let (k, owner, ttl) = (key.clone(), bp.owner.clone(), bp.claim_ttl_ms());
        match bp.store(move |s| s.bp_extend_claim(&k, &owner, ttl)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(event_key = key, "lost the claim on the request");
                return;
            }
            Err(e) => tracing::warn!(event_key = key, "cannot renew the claim: {e}"),
        }
    }
}

fn tokens_of(row: &BpRow) -> UserTokens {
    row.tokens
        .clone()
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default()
}

/// The wait before try `n` (1, 2, ...): doubling from half a second, at most `max`, with
/// jitter so that replicas and requests spread out.
pub fn backoff(n: u32, max: Duration) -> Duration {
    let doubled = Duration::from_millis(500).saturating_mul(1 << n.saturating_sub(1).min(16));
    let capped = doubled.min(max);
    capped.mul_f64(rand::random_range(0.8..=1.0))
}

async fn run_then_reply(bp: &Arc<Bp>, mut row: BpRow) -> Result<(), String> {
    let tokens = tokens_of(&row);
    let who = json!({"code": row.code, "event_key": row.key, "workflow_id": row.workflow_id});
    let end = match bp.actions.get(&row.code) {
        // Accepted by a serve that had the action; this one has not (the file was removed).
        None => {
            let message = format!("Неизвестное действие {}", row.code);
            RunEnd::Answer(run::failure_answer(&who, &message, &message))
        }
        Some(file) => {
            let input = run::run_input(
                row.request.as_ref().unwrap_or(&Json::Null),
                row.event_token.as_deref().unwrap_or_default(),
                &tokens,
                &bp.app,
            );
            tracing::info!(
                event_key = row.key,
                code = row.code,
                attempt = row.attempts,
                "running the action"
            );
            run::execute(file.clone(), input, row.attempts, who).await
        }
    };
    let renewed = take_renewed_tokens(&row.key).map(|t| json!(t));
    if let Some(t) = &renewed {
        row.tokens = Some(t.clone());
    }
    let now = now_ms();
    let answer = match end {
        // Not an answer: the row is left due at once, for this serve restarted or a replica.
        RunEnd::Interrupted => {
            tracing::info!(
                event_key = row.key,
                "the run was interrupted; it runs again on the next start"
            );
            let (key, owner) = (row.key.clone(), bp.owner.clone());
            bp.store(move |s| {
                let next = BpNext::RetryAt {
                    at_ms: now,
                    tokens: renewed.as_ref(),
                    delivery: false,
                };
                s.bp_settle(&key, &owner, next)
            })
            .await?;
            return Ok(());
        }
        RunEnd::Unavailable { reason, answer: _ } if now < row.deadline_ms => {
            let at_ms = (now + backoff(row.attempts, bp.settings.max_backoff).as_millis() as i64)
                .min(row.deadline_ms);
            tracing::warn!(
                event_key = row.key,
                attempt = row.attempts,
                "{reason}; trying again"
            );
            let (key, owner) = (row.key.clone(), bp.owner.clone());
            bp.store(move |s| {
                let next = BpNext::RetryAt {
                    at_ms,
                    tokens: renewed.as_ref(),
                    delivery: false,
                };
                s.bp_settle(&key, &owner, next)
            })
            .await?;
            return Ok(());
        }
        RunEnd::Unavailable { reason, answer } => {
            tracing::warn!(
                event_key = row.key,
                "{reason}; the retry window is over, answering the failure"
            );
            answer
        }
        RunEnd::Answer(answer) => answer,
    };
    let (key, owner, stored) = (row.key.clone(), bp.owner.clone(), answer.clone());
    let kept = bp
        .store(move |s| {
            let next = BpNext::Answered {
                answer: &stored,
                tokens: renewed.as_ref(),
            };
            s.bp_settle(&key, &owner, next)
        })
        .await?;
    if !kept {
        return Err("lost the claim before the answer was stored".into());
    }
    row.answer = Some(answer);
    row.status = BpStatus::Reply;
    deliver(bp, row).await
}

/// Send the stored answer (nothing for `use_subscription=N`), or leave it for later.
async fn deliver(bp: &Arc<Bp>, mut row: BpRow) -> Result<(), String> {
    let answer = row.answer.clone().unwrap_or(Json::Null);
    let event_token = row.event_token.clone().unwrap_or_default();
    let settled = if !row.use_subscription {
        Settled::NotWanted
    } else if event_token.is_empty() {
        Settled::Refused("the event token is gone".into())
    } else {
        let (tokens, sent) = reply::send(&bp.app, tokens_of(&row), &event_token, &answer).await;
        row.deliveries += 1;
        match sent {
            Ok(()) => Settled::Sent,
            Err(ConnectorError::Rejected(why)) => Settled::Refused(why.to_string()),
            Err(e) if now_ms() - row.received_ms > REPLY_GIVE_UP_MS => {
                Settled::Refused(format!("not delivered within a day: {e}"))
            }
            Err(e) => {
                let wait = backoff(row.deliveries, bp.settings.max_backoff);
                tracing::warn!(
                    event_key = row.key,
                    delivery = row.deliveries,
                    "the reply was not delivered ({e}); trying again in {wait:?}"
                );
                let (key, owner) = (row.key.clone(), bp.owner.clone());
                let at_ms = now_ms() + wait.as_millis() as i64;
                bp.store(move |s| {
                    let tokens = json!(tokens);
                    let next = BpNext::RetryAt {
                        at_ms,
                        tokens: Some(&tokens),
                        delivery: true,
                    };
                    s.bp_settle(&key, &owner, next)
                })
                .await?;
                return Ok(());
            }
        }
    };
    let (status, delivery) = match &settled {
        Settled::Sent => (BpStatus::Replied, true),
        Settled::NotWanted => (BpStatus::Replied, false),
        Settled::Refused(why) => {
            tracing::error!(event_key = row.key, "the reply cannot be delivered: {why}");
            (BpStatus::Undeliverable, !event_token.is_empty())
        }
    };
    let (key, owner) = (row.key.clone(), bp.owner.clone());
    bp.store(move |s| s.bp_settle(&key, &owner, BpNext::Finished { status, delivery }))
        .await?;
    tracing::info!(
        event_key = row.key,
        code = row.code,
        outcome = answer["outcome"].as_str().unwrap_or_default(),
        replied = matches!(settled, Settled::Sent),
        "business-process request done"
    );
    if let Some(journal) = &bp.journal {
        journal.write(&row, &answer, &settled);
    }
    // Erased from the store, the request's secrets need no more masking.
    let tokens = tokens_of(&row);
    for secret in [&event_token, &tokens.access_token, &tokens.refresh_token] {
        crate::secrets::forget(secret);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let max = Duration::from_secs(10);
        assert!(backoff(1, max) <= Duration::from_millis(500));
        assert!(backoff(3, max) >= Duration::from_millis(1600));
        assert!(backoff(40, max) <= max && backoff(40, max) >= Duration::from_secs(8));
    }
}
