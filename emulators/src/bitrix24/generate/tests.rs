use super::*;

#[test]
fn demo_shape() {
    let p = Portal::demo();
    assert_eq!(p.len("contact"), 30);
    assert_eq!(p.len("deal"), 40);
    let c = p.get("contact", 39_910).unwrap();
    assert!(c["PHONE"][0]["ID"].is_string());
    assert!(!c["UF_CRM_1470852549"].as_array().unwrap().is_empty());
    assert_eq!(
        p.get("contact", 39_910).unwrap()["NAME"],
        "Наталья Зарудная"
    );
    assert!(p.get("contact", 39_922).unwrap().get("PHONE").is_none());
    let d = p.get("deal", 96_000).unwrap();
    assert_eq!(d["STAGE_ID"], "WON");
    assert_eq!(p.product_rows(96_000).len(), 1);
    assert_eq!(p.product_rows(96_008).len(), 2);
    assert_eq!(p.deal_contacts(96_000)[0]["CONTACT_ID"], json!(39_900));
    assert_eq!(p.get("user", 1).unwrap()["ACTIVE"], true);
    assert_eq!(p.len("activity"), 150);
    // deterministic
    assert_eq!(
        format!("{:?}", Portal::demo().get("deal", 96_010)),
        format!("{:?}", p.get("deal", 96_010))
    );
}

#[test]
fn bulk_is_deterministic_and_consistent() {
    let a = Portal::bulk_contacts(1000);
    let b = Portal::bulk_contacts(1000);
    assert_eq!(a.len("contact"), 1000);
    assert_eq!(a.get("contact", 777), b.get("contact", 777));
    let r = a.get("contact", 1).unwrap();
    assert_eq!(r["ID"], "1");
    assert!(r["DATE_MODIFY"].as_str().unwrap().ends_with("+03:00"));
    let d = Portal::bulk_deals(200);
    assert_eq!(d.len("deal"), 200);
    assert!(!d.product_rows(10).is_empty());
    let s = Portal::report_scale(&ReportScale {
        companies: 50,
        contacts: 100,
        deals: 100,
        activities: 1000,
        users: 20,
        ..Default::default()
    });
    assert_eq!(s.len("activity"), 1000);
    assert_eq!(s.len("user"), 20);
    let act = s.get("activity", 5).unwrap();
    assert!(act["START_TIME"].is_string() && act["OWNER_TYPE_ID"].is_string());
}

/// Memory and time of a report-scale portal with 1M activities (run by hand:
/// `cargo test --release --lib report_scale_1m -- --ignored --nocapture`).
#[test]
#[ignore]
fn report_scale_1m() {
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS"))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    let before = rss();
    let t = std::time::Instant::now();
    let p = Portal::report_scale(&ReportScale::default());
    eprintln!(
        "report_scale default: {:?}; {before} -> {}",
        t.elapsed(),
        rss()
    );
    assert_eq!(p.len("activity"), 1_000_000);
    let t = std::time::Instant::now();
    let c = Portal::bulk_contacts(1_000_000);
    eprintln!("bulk_contacts(1M): {:?}; {}", t.elapsed(), rss());
    assert_eq!(c.len("contact"), 1_000_000);
}
