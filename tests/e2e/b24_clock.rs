//! The incremental settle window is measured on the portal's clock (issue 13, item 5): a host
//! whose clock runs ahead of the portal's must still leave the portal's current seconds for
//! the next run, or its cursor could pass records that are yet to be stamped in them.

use emulators::bitrix24::Portal;
use serde_json::json;

use crate::harness::*;

fn incremental_export(s: &Scratch) -> std::path::PathBuf {
    s.write(
        "export.yaml",
        &format!(
            r#"name: export
connections:
  b24: {{type: bitrix24, webhook_url: "${{env:B24_WEBHOOK_URL}}"}}
source:
  type: bitrix24.list
  connection: b24
  method: crm.contact.list
  select: [ID, NAME, DATE_MODIFY]
  incremental: {{field: DATE_MODIFY, start: "2024-01-01T00:00:00+03:00", settle_secs: 60}}
sinks:
  - {{type: jsonl, path: "{out}"}}
"#,
            out = s.path("out.jsonl").display()
        ),
    )
}

fn ids(s: &Scratch) -> Vec<String> {
    read_jsonl(&s.path("out.jsonl"))
        .iter()
        .map(|r| r["ID"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_host_clock_ahead_of_the_portal_does_not_read_the_portals_unsettled_seconds() {
    let mut portal = Portal::new();
    for id in 1..=3 {
        portal.insert(
            "contact",
            row(json!({"ID": id.to_string(), "NAME": format!("n{id}"), "DATE_CREATE": "2024-01-01T00:00:00+03:00", "DATE_MODIFY": "2024-02-01T00:00:00+03:00"})),
        );
    }
    let emu = b24(portal);
    // The portal's clock is an hour behind this host's.
    emu.set_clock_offset(-3600.0);
    // Someone edits contact 2 in the portal just now (portal time).
    emu.act(
        "crm.contact.update",
        json!({"id": 2, "fields": {"NAME": "edited"}}),
    )
    .unwrap();
    let s = Scratch::new();
    let p = incremental_export(&s);
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Contact 2 changed less than settle_secs ago on the portal's clock: next run, not this one
    // (on the host's clock it would be an hour old and read now).
    assert_eq!(ids(&s), ["1", "3"]);

    // Two minutes later on the portal, the edit has settled and is read.
    emu.set_clock_offset(-3600.0 + 120.0);
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ids(&s), ["2"]);
    assert_eq!(read_jsonl(&s.path("out.jsonl"))[0]["NAME"], "edited");
}
