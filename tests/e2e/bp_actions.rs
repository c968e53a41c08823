//! Seed 002, part 1: the nine business-process actions of `pipelines/bp/`, answered by the real
//! `etl run PIPELINE --request FILE` against the emulated portal (its app context: OAuth calls
//! with `auth=`, `bizproc.event.send` recorded), and their registration with
//! `etl activities sync`. The requests are the queue server's form bodies, built by the
//! emulator's workflow helper (an event token the portal waits on, a fresh token pair).

use std::path::PathBuf;
use std::process::{Command, Output};

use emulators::bitrix24::{Emulator, Portal, Workflow};
use serde_json::{Value, json};

use super::harness::{Scratch, assert_success, b24, etl, root, run, stderr, stdout};

fn action(file: &str) -> PathBuf {
    root().join("pipelines/bp").join(file)
}

/// The installed application of the emulated portal, and no webhook.
fn app_env<'a>(cmd: &'a mut Command, emu: &Emulator) -> &'a mut Command {
    cmd.env_remove("B24_WEBHOOK_URL")
        .env_remove("B24_APP_REFRESH_TOKEN")
        .env("B24_APP_ENDPOINT", emu.app_endpoint())
        .env("B24_APP_MEMBER_ID", emu.member_id())
        .env("B24_APP_TOKEN", emu.application_token())
        .env("B24_APP_CLIENT_ID", emu.client_id())
        .env("B24_APP_CLIENT_SECRET", emu.client_secret())
        .env("B24_OAUTH_URL", emu.oauth_url())
}

struct Answered {
    out: Output,
    /// The reply printed (`report.answer`).
    reply: Value,
    event_token: String,
}

impl Answered {
    fn result(&self, key: &str) -> Value {
        self.reply["return_values"][key].clone()
    }
    fn log(&self) -> String {
        self.reply["log_message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The last JSON object printed at the start of a line: the reply.
fn printed_reply(text: &str) -> Value {
    let start = text
        .match_indices('{')
        .map(|(i, _)| i)
        .rfind(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
        .unwrap_or_else(|| panic!("no reply printed:\n{text}"));
    serde_json::from_str(text[start..].trim()).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// A workflow reaching the action of `file`, answered with `etl run --request`.
fn answer_with(emu: &Emulator, file: &str, wf: Workflow, extra: &[&str]) -> Answered {
    let request = emu.prepare_workflow(&wf);
    let s = Scratch::new();
    let body = s.write("request.txt", &request.body());
    let mut cmd = etl();
    app_env(&mut cmd, emu)
        .arg("run")
        .arg(action(file))
        .arg("--request")
        .arg(&body)
        .arg("--state")
        .arg(s.state())
        .arg("--no-progress")
        .args(extra);
    let out = run(&mut cmd);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    for key in [
        "event_token",
        "auth[access_token]",
        "auth[refresh_token]",
        "auth[application_token]",
    ] {
        let secret = request.get(key).unwrap_or_default();
        assert!(
            !secret.is_empty() && !printed.contains(secret),
            "{key} printed"
        );
    }
    assert!(!printed.contains(&emu.client_secret()));
    let reply = printed_reply(&stdout(&out));
    Answered {
        out,
        reply,
        event_token: request.event_token,
    }
}

fn answer(emu: &Emulator, file: &str, code: &str, document: &str, props: Value) -> Answered {
    answer_with(
        emu,
        file,
        Workflow::new(code, document).with_properties(props),
        &[],
    )
}

/// Exactly one reply reached the portal for this request, with these return values.
fn assert_replied(emu: &Emulator, a: &Answered, values: Value) {
    assert_eq!(
        a.out.status.code(),
        Some(0),
        "{}{}",
        stdout(&a.out),
        stderr(&a.out)
    );
    let sends = emu.event_sends_for(&a.event_token);
    assert_eq!(sends.len(), 1, "{}", stderr(&a.out));
    assert!(sends[0].closed_action);
    for (k, v) in values.as_object().unwrap() {
        assert_eq!(&sends[0].return_values[k], v, "{k}: {sends:?}");
        assert_eq!(&a.result(k), v, "{k}");
    }
    assert_eq!(sends[0].log_message, a.log());
}

fn crm_calls(emu: &Emulator) -> u64 {
    emu.log()
        .iter()
        .filter(|c| c.method.starts_with("crm.") || c.method.starts_with("user."))
        .count() as u64
}

fn deal(emu: &Emulator, id: u64) -> Value {
    emu.with_portal(|p| Value::Object(p.get("deal", id).unwrap()))
}

#[test]
fn update_deal_changes_the_given_fields_and_replaces_contacts() {
    let emu = b24(Portal::demo());
    let before = deal(&emu, 96000);
    let a = answer(
        &emu,
        "update_deal.yaml",
        "b24etl_update_deal",
        "DEAL_96000",
        json!({"deal_id": " DEAL_96000 ", "title": "Новая сделка", "stage_id": "", "comments": "",
               "contact_ids": ["39904", "[39906] Иван"]}),
    );
    assert_replied(&emu, &a, json!({"result": "true"}));
    assert_eq!(emu.requests("crm.deal.update"), 1);
    assert_eq!(emu.requests("crm.item.update"), 0);
    let after = deal(&emu, 96000);
    assert_eq!(after["TITLE"], "Новая сделка");
    // Empty inputs are not sent: nothing is cleared.
    assert_eq!(after["STAGE_ID"], before["STAGE_ID"]);
    assert_eq!(after["COMMENTS"], before["COMMENTS"]);
    let links = emu
        .act("crm.deal.contact.items.get", json!({"id": 96000}))
        .unwrap();
    let ids: Vec<Value> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["CONTACT_ID"].clone())
        .collect();
    assert_eq!(ids, vec![json!(39904), json!(39906)]);
    let call = &emu.calls("crm.deal.update")[0];
    assert!(
        !call.params.to_string().contains("STAGE_ID"),
        "{:?}",
        call.params
    );
}

#[test]
fn an_expired_user_token_is_renewed_once_and_the_reply_goes_with_the_new_one() {
    let emu = b24(Portal::demo());
    let wf = Workflow::new("b24etl_update_deal", "DEAL_96000")
        .with_properties(json!({"deal_id": "96000", "title": "После продления"}));
    let request = emu.prepare_workflow(&wf);
    assert!(emu.expire_access_token(request.get("auth[access_token]").unwrap()));
    let s = Scratch::new();
    let body = s.write("request.txt", &request.body());
    let mut cmd = etl();
    app_env(&mut cmd, &emu)
        .arg("run")
        .arg(action("update_deal.yaml"))
        .arg("--request")
        .arg(&body)
        .arg("--state")
        .arg(s.state())
        .arg("--no-progress");
    let out = run(&mut cmd);
    assert_success(&out);
    // One renewal with the request's refresh token; the update and the reply use the new pair
    // (the old refresh token is spent, the old access token expired).
    assert_eq!(emu.token_refreshes(), 1);
    assert_eq!(deal(&emu, 96000)["TITLE"], "После продления");
    let sends = emu.event_sends_for(&request.event_token);
    assert_eq!(sends.len(), 1, "{}", stderr(&out));
    assert_eq!(sends[0].return_values["result"], json!("true"));
    for key in ["auth[access_token]", "auth[refresh_token]", "event_token"] {
        let secret = request.get(key).unwrap();
        assert!(
            !stdout(&out).contains(secret) && !stderr(&out).contains(secret),
            "{key}"
        );
    }
}

#[test]
fn update_deal_moves_the_pipeline_through_crm_item_update_first() {
    let emu = b24(Portal::demo());
    let a = answer(
        &emu,
        "update_deal.yaml",
        "b24etl_update_deal",
        "DEAL_96000",
        json!({"deal_id": "96000", "category_id": "1"}),
    );
    assert_replied(&emu, &a, json!({"result": "true"}));
    assert_eq!(emu.requests("crm.item.update"), 1);
    assert_eq!(emu.requests("crm.deal.update"), 0);
    assert_eq!(deal(&emu, 96000)["CATEGORY_ID"], "1");
    // Already there: no move, and nothing else to change.
    let again = answer(
        &emu,
        "update_deal.yaml",
        "b24etl_update_deal",
        "DEAL_96000",
        json!({"deal_id": "96000", "category_id": "1"}),
    );
    assert_replied(&emu, &again, json!({"result": "true"}));
    assert_eq!(emu.requests("crm.item.update"), 1);
}

#[test]
fn update_deal_refusals_answer_false_with_the_reason() {
    let emu = b24(Portal::demo());
    let a = answer(
        &emu,
        "update_deal.yaml",
        "b24etl_update_deal",
        "DEAL_5",
        json!({"deal_id": "5", "title": "x"}),
    );
    assert_replied(&emu, &a, json!({"result": "false"}));
    assert!(a.log().contains("Deal is not found"), "{}", a.log());

    emu.clear_log();
    let a = answer(
        &emu,
        "update_deal.yaml",
        "b24etl_update_deal",
        "DEAL_96000",
        json!({"deal_id": " ", "title": "x"}),
    );
    assert_replied(&emu, &a, json!({"result": "false"}));
    assert_eq!(
        a.log(),
        "Сделка не изменена: Не заполнен обязательный параметр: ID Сделки"
    );
    assert_eq!(crm_calls(&emu), 0, "no CRM call without the required input");
}

#[test]
fn update_company_adds_only_new_phones_and_replaces_contacts() {
    let emu = b24(Portal::demo());
    let props = json!({"company_id": "COMPANY_1", "phone": "+7 (900) 111-22-33",
                       "email": "Office@Example.ru", "contact_ids": ["39900", "39902"]});
    let a = answer(
        &emu,
        "update_company.yaml",
        "b24etl_update_company",
        "COMPANY_1",
        props,
    );
    assert_replied(&emu, &a, json!({"result": "true"}));
    assert_eq!(
        emu.with_portal(|p| p.company_contacts(1)),
        vec![39900, 39902]
    );
    let company = emu.act("crm.company.get", json!({"id": 1})).unwrap();
    let phones = company["PHONE"].as_array().cloned().unwrap_or_default();
    let count = |v: &str| phones.iter().filter(|r| r["VALUE"] == v).count();
    assert_eq!(count("+7 (900) 111-22-33"), 1);
    // The same phone and e-mail written differently: nothing to add, no update.
    let updates = emu.requests("crm.company.update");
    let a = answer(
        &emu,
        "update_company.yaml",
        "b24etl_update_company",
        "COMPANY_1",
        json!({"company_id": "1", "phone": "89001112233", "email": "office@example.RU"}),
    );
    assert_replied(&emu, &a, json!({"result": "true"}));
    assert_eq!(emu.requests("crm.company.update"), updates);
    assert_eq!(a.log(), "Нет изменяемых полей");
    let a = answer(
        &emu,
        "update_company.yaml",
        "b24etl_update_company",
        "COMPANY_1",
        json!({"company_id": "999999", "title": "x"}),
    );
    assert_replied(&emu, &a, json!({"result": "false"}));
}

#[test]
fn update_contact_and_lead() {
    let emu = b24(Portal::demo());
    let a = answer(
        &emu,
        "update_contact.yaml",
        "b24etl_update_contact",
        "CONTACT_39904",
        json!({"contact_id": "39904", "post": "Директор", "company_ids": "2, 3", "web": "example.ru"}),
    );
    assert_replied(&emu, &a, json!({"result": "true"}));
    let c = emu.with_portal(|p| Value::Object(p.get("contact", 39904).unwrap()));
    assert_eq!(c["POST"], "Директор");
    assert_eq!(emu.with_portal(|p| p.contact_companies(39904).len()), 2);

    let lead = emu.with_portal(|p| p.ids("lead")[0]);
    let a = answer(
        &emu,
        "update_lead.yaml",
        "b24etl_update_lead",
        &format!("LEAD_{lead}"),
        json!({"lead_id": lead.to_string(), "title": "Повторная заявка", "name": ""}),
    );
    assert_replied(&emu, &a, json!({"result": "true"}));
    let row = emu.with_portal(|p| Value::Object(p.get("lead", lead).unwrap()));
    assert_eq!(row["TITLE"], "Повторная заявка");
    let a = answer(
        &emu,
        "update_lead.yaml",
        "b24etl_update_lead",
        "LEAD_1",
        json!({"title": "x"}),
    );
    assert_replied(&emu, &a, json!({"result": "false"}));
    assert_eq!(
        a.log(),
        "Лид не изменён: Не заполнен обязательный параметр: ID Лида"
    );
}

#[test]
fn activity_add_creates_once_with_its_origin_and_delete_removes_it() {
    let emu = b24(Portal::demo());
    let props = json!({"subject": "Позвонить клиенту", "type_id": "2", "description": "Уточнить оплату",
                       "owner_type": "2", "owner_id": "DEAL_96000", "priority": "3",
                       "communication": "+7 900 000-00-00"});
    let a = answer(
        &emu,
        "activity_add.yaml",
        "b24etl_activity_add",
        "DEAL_96000",
        props.clone(),
    );
    assert_eq!(a.out.status.code(), Some(0), "{}", stderr(&a.out));
    let id = a.result("activity_id");
    assert!(id.as_u64().is_some() || id.as_str().is_some(), "{id}");
    assert_replied(&emu, &a, json!({"activity_id": id.clone()}));
    assert_eq!(emu.requests("crm.activity.add"), 1);
    let origin = format!("b24etl:{}", a.reply["event_key"].as_str().unwrap());
    let found = emu
        .act(
            "crm.activity.list",
            json!({"filter": {"ORIGIN_ID": origin}, "select": ["ID", "SUBJECT"]}),
        )
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["SUBJECT"], "Позвонить клиенту");

    let mut missing = props.clone();
    missing["subject"] = json!("");
    emu.clear_log();
    let a = answer(
        &emu,
        "activity_add.yaml",
        "b24etl_activity_add",
        "DEAL_96000",
        missing,
    );
    assert_replied(&emu, &a, json!({"activity_id": ""}));
    assert_eq!(
        a.log(),
        "Дело не создано: Не заполнен обязательный параметр: Заголовок дела"
    );
    assert_eq!(crm_calls(&emu), 0);

    let id_text = found[0]["ID"].as_str().unwrap().to_string();
    let del = |emu: &Emulator| {
        answer(
            emu,
            "activity_delete.yaml",
            "b24etl_activity_delete",
            "DEAL_96000",
            json!({"activity_id": id_text}),
        )
    };
    let a = del(&emu);
    assert_replied(&emu, &a, json!({"result": "true"}));
    let a = del(&emu);
    assert_replied(&emu, &a, json!({"result": "false"}));
    assert!(a.log().contains("Activity is not found"), "{}", a.log());
}

#[test]
fn feed_message_posts_a_timeline_comment() {
    let emu = b24(Portal::demo());
    let a = answer(
        &emu,
        "feed_message.yaml",
        "b24etl_feed_message",
        "DEAL_96000",
        json!({"entity_type": "deal", "entity_id": "96000", "title": "Итог", "message": "Счёт оплачен"}),
    );
    assert_replied(&emu, &a, json!({"result": "true"}));
    let call = &emu.calls("crm.timeline.comment.add")[0];
    assert!(
        call.params
            .to_string()
            .contains("[B]Итог[/B]\\nСчёт оплачен"),
        "{:?}",
        call.params
    );
    let a = answer(
        &emu,
        "feed_message.yaml",
        "b24etl_feed_message",
        "DEAL_96000",
        json!({"entity_type": "deal", "entity_id": "1", "title": "Итог", "message": "x"}),
    );
    assert_replied(&emu, &a, json!({"result": "false"}));
}

#[test]
fn user_info_answers_the_card_and_departments() {
    let emu = b24(Portal::demo());
    let a = answer(
        &emu,
        "user_info.yaml",
        "b24etl_user_info",
        "DEAL_96000",
        json!({"user_id": ["user_932", "user_1"]}),
    );
    assert_replied(
        &emu,
        &a,
        json!({"city": "Москва", "active": "Y", "inner_phone": "932",
               "department_names": ["Отдел продаж"], "department_ids": [5]}),
    );
    let a = answer(
        &emu,
        "user_info.yaml",
        "b24etl_user_info",
        "DEAL_96000",
        json!({"user_id": "[999999] Никто"}),
    );
    assert_eq!(a.out.status.code(), Some(0), "{}", stderr(&a.out));
    assert_eq!(a.log(), "Пользователь 999999 не найден");
    assert_eq!(emu.event_sends_for(&a.event_token).len(), 1);
}

#[test]
fn invoice_status_answers_one_letter() {
    let emu = b24(Portal::demo());
    let a = answer(
        &emu,
        "invoice_status.yaml",
        "b24etl_invoice_status",
        "DEAL_96000",
        json!({"invoice_id": "501"}),
    );
    assert_replied(&emu, &a, json!({"status": "P"}));
    let a = answer(
        &emu,
        "invoice_status.yaml",
        "b24etl_invoice_status",
        "DEAL_96000",
        json!({"invoice_id": "9"}),
    );
    assert_replied(&emu, &a, json!({"status": ""}));
    assert!(a.log().contains("Not found"), "{}", a.log());
}

#[test]
fn a_dry_run_writes_nothing_and_sends_no_reply() {
    let emu = b24(Portal::demo());
    let wf = Workflow::new("b24etl_update_deal", "DEAL_96000")
        .with_properties(json!({"deal_id": "96000", "title": "Черновик"}));
    let a = answer_with(&emu, "update_deal.yaml", wf, &["--dry-run"]);
    assert_eq!(a.out.status.code(), Some(0), "{}", stderr(&a.out));
    assert_eq!(emu.requests("crm.deal.update"), 0);
    assert!(emu.event_sends_for(&a.event_token).is_empty());
    assert!(
        stdout(&a.out).contains("crm.deal.update"),
        "{}",
        stdout(&a.out)
    );
    assert_eq!(a.result("result"), "true");

    // use_subscription=N: the action runs, nothing is sent back.
    let mut wf = Workflow::new("b24etl_update_deal", "DEAL_96000")
        .with_properties(json!({"deal_id": "96000", "title": "Без ответа"}));
    wf.use_subscription = false;
    let a = answer_with(&emu, "update_deal.yaml", wf, &[]);
    assert_eq!(a.out.status.code(), Some(0), "{}", stderr(&a.out));
    assert_eq!(deal(&emu, 96000)["TITLE"], "Без ответа");
    assert_eq!(emu.requests("bizproc.event.send"), 0);
}

// --- registration ---

fn sync(emu: &Emulator, s: &Scratch, files: &[PathBuf], extra: &[&str]) -> Output {
    // Each sync is a new process: a fresh bucket on the portal too, so that the counts below
    // are requests made, not refusals repeated.
    emu.reset_limits();
    let (_, refresh) = emu.issue_tokens(1);
    let mut cmd = etl();
    app_env(&mut cmd, emu)
        .env("B24_APP_REFRESH_TOKEN", refresh)
        .args(["activities", "sync"])
        .args(files)
        .arg("--state")
        .arg(s.state())
        .args(extra);
    run(&mut cmd)
}

/// The nine actions of issue 11 (issue 12's five are registered in bp_domain).
fn all_actions() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "activity_add",
        "activity_delete",
        "feed_message",
        "invoice_status",
        "update_company",
        "update_contact",
        "update_deal",
        "update_lead",
        "user_info",
    ]
    .iter()
    .map(|name| root().join("pipelines/bp").join(format!("{name}.yaml")))
    .collect();
    files.sort();
    files
}

fn lines_starting(out: &Output, word: &str) -> usize {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with(&format!("{word} b24etl_")))
        .count()
}

#[test]
fn sync_adds_then_leaves_unchanged_then_updates_and_prunes() {
    let emu = b24(Portal::demo());
    let s = Scratch::new();
    let files = all_actions();
    assert_eq!(files.len(), 9);
    let out = sync(
        &emu,
        &s,
        &files,
        &["--handler-base", "https://etl.example.ru/"],
    );
    assert_success(&out);
    assert_eq!(lines_starting(&out, "added"), 9, "{}", stdout(&out));
    assert_eq!(emu.requests("bizproc.activity.add"), 9);
    let registered = emu.registered_activities();
    assert_eq!(registered.len(), 9);
    let deal = registered
        .iter()
        .find(|a| a.code == "b24etl_update_deal")
        .unwrap();
    assert_eq!(
        deal.fields["HANDLER"],
        "https://etl.example.ru/bp/b24etl_update_deal"
    );
    assert_eq!(deal.fields["USE_SUBSCRIPTION"], "Y");
    let props = &deal.fields["PROPERTIES"];
    assert_eq!(props["deal_id"]["REQUIRED"], "Y", "{props}");
    assert_eq!(props["contact_ids"]["MULTIPLE"], "Y");
    assert!(
        props["currency_id"]["OPTIONS"]
            .as_object()
            .is_some_and(|o| o.contains_key("RUB")),
        "options read at registration: {props}"
    );
    assert!(deal.fields["RETURN_PROPERTIES"]["result"].is_object());
    let add = registered
        .iter()
        .find(|a| a.code == "b24etl_activity_add")
        .unwrap();
    assert_eq!(
        add.fields["PROPERTIES"]["type_id"]["OPTIONS"]["2"], "Звонок",
        "{:?}",
        add.fields
    );

    // The same payloads again: nothing to send.
    let out = sync(
        &emu,
        &s,
        &files,
        &["--handler-base", "https://etl.example.ru"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(lines_starting(&out, "unchanged"), 9, "{}", stdout(&out));
    assert_eq!(emu.requests("bizproc.activity.update"), 0);

    // A new handler: every action updated.
    let out = sync(
        &emu,
        &s,
        &files,
        &["--handler-base", "https://etl2.example.ru"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(lines_starting(&out, "updated"), 9, "{}", stdout(&out));
    assert_eq!(emu.requests("bizproc.activity.update"), 9);
    assert!(emu.registered_activities().iter().all(|a| {
        a.fields["HANDLER"]
            .as_str()
            .unwrap()
            .starts_with("https://etl2.example.ru/bp/")
    }));

    // Only one file declared: the other eight are deleted.
    let out = sync(
        &emu,
        &s,
        &[action("update_deal.yaml")],
        &["--handler-base", "https://etl2.example.ru", "--prune"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(lines_starting(&out, "deleted"), 8, "{}", stdout(&out));
    assert_eq!(lines_starting(&out, "unchanged"), 1, "{}", stdout(&out));
    assert_eq!(emu.requests("bizproc.activity.delete"), 8);
    let left: Vec<String> = emu
        .registered_activities()
        .into_iter()
        .map(|a| a.code)
        .collect();
    assert_eq!(left, vec!["b24etl_update_deal".to_string()]);
}

#[test]
fn sync_with_only_a_webhook_refuses_and_calls_nothing() {
    let emu = b24(Portal::demo());
    let s = Scratch::new();
    let out = run(etl()
        .env_remove("B24_APP_ENDPOINT")
        .env_remove("B24_APP_MEMBER_ID")
        .env_remove("B24_APP_TOKEN")
        .env_remove("B24_APP_CLIENT_ID")
        .env_remove("B24_APP_CLIENT_SECRET")
        .env_remove("B24_APP_REFRESH_TOKEN")
        .env("B24_WEBHOOK_URL", emu.webhook_url())
        .args(["activities", "sync"])
        .args(all_actions())
        .arg("--handler-base")
        .arg("https://etl.example.ru")
        .arg("--state")
        .arg(s.state()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs an application"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(emu.http_requests(), 0);
    assert!(!stderr(&out).contains(emu.webhook_url().trim_end_matches('/')));
}

#[test]
fn sync_refuses_a_pipeline_that_declares_no_action() {
    let emu = b24(Portal::demo());
    let s = Scratch::new();
    let out = sync(
        &emu,
        &s,
        &[root().join("pipelines/contacts.yaml")],
        &["--handler-base", "https://etl.example.ru", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(emu.http_requests(), 0);
}

/// `etl activities sync` of invoice_status.yaml as the installed app, with this state.
fn sync_invoice_status(emu: &Emulator, state: &std::path::Path) -> Output {
    let mut cmd = etl();
    app_env(&mut cmd, emu)
        .args(["activities", "sync"])
        .arg(action("invoice_status.yaml"))
        .args(["--handler-base", "https://etl.example.ru", "--state"])
        .arg(state);
    run(&mut cmd)
}

#[test]
fn sync_uses_the_install_tokens_kept_in_the_state_and_renews_them_once() {
    let emu = b24(Portal::demo());
    let s = Scratch::new();
    let (access, refresh) = emu.issue_tokens(1);
    {
        // As serve's install handler keeps them: sealed with the app's client secret.
        let store = etl::state::Store::open(&s.state()).unwrap();
        store.seal_secrets_with(&emu.client_secret());
        let tokens = json!({"access_token": access, "refresh_token": refresh, "user_id": "1"});
        store
            .kv_put_secret("_app", "oauth", "install", &tokens)
            .unwrap();
    }
    // The access token of the install event has expired: renewed once with its refresh token.
    assert!(emu.expire_access_token(&access));
    let sync = || sync_invoice_status(&emu, &s.state());
    let out = sync();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "added b24etl_invoice_status");
    assert_eq!(emu.token_refreshes(), 1);
    assert_eq!(emu.registered_activities().len(), 1);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!printed.contains(&access) && !printed.contains(&refresh));
    // The renewed pair was kept (sealed too) and serves the next sync without a renewal.
    let out = sync();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(emu.token_refreshes(), 1);
}

#[test]
fn sync_without_any_admin_token_says_how_to_get_one() {
    let emu = b24(Portal::demo());
    let s = Scratch::new();
    let out = sync_invoice_status(&emu, &s.state());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("B24_APP_REFRESH_TOKEN"),
        "{}",
        stderr(&out)
    );
    assert_eq!(emu.http_requests(), 0);
}

/// Issue 11 item 5: crm.activity.add is made, then its answer is lost (HTTP 500 after the
/// write). The engine does not create it again: it finds it by ORIGIN_ID and answers its ID.
#[test]
fn activity_add_after_a_lost_answer_finds_the_activity_instead_of_creating_another() {
    let emu = b24(Portal::demo());
    emu.faults().on_method(
        "crm.activity.add",
        emulators::bitrix24::Fault::WriteThenFail,
        1,
    );
    let a = answer(
        &emu,
        "activity_add.yaml",
        "b24etl_activity_add",
        "DEAL_96000",
        json!({"subject": "Встреча", "type_id": "1", "description": "Обсудить договор",
               "owner_type": "2", "owner_id": "96000", "priority": "2",
               "communication": "client@example.ru"}),
    );
    assert_eq!(a.out.status.code(), Some(0), "{}", stderr(&a.out));
    let origin = format!("b24etl:{}", a.reply["event_key"].as_str().unwrap());
    let found = emu
        .act(
            "crm.activity.list",
            json!({"filter": {"ORIGIN_ID": origin}, "select": ["ID"]}),
        )
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "created once");
    assert_eq!(emu.requests("crm.activity.add"), 1);
    assert_eq!(emu.requests("crm.activity.list"), 1);
    let id = found[0]["ID"].clone();
    assert_eq!(
        a.result("activity_id").to_string().trim_matches('"'),
        id.as_str().unwrap()
    );
    assert_eq!(emu.event_sends_for(&a.event_token).len(), 1);
}
