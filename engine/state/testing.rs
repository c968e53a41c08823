//! Test support: the PostgreSQL server the state tests run against, and a fresh schema per test
//! so tests (and their migrations) never see each other's tables. Used by the unit tests here
//! and by the end-to-end tests.

use std::str::FromStr;

/// The test server's URL from `ETL_TEST_POSTGRES`. Without it a developer's run skips the
/// PostgreSQL half of a test (saying so); CI (`CI=true`) fails instead, so a missing server can
/// never pass unnoticed.
pub fn postgres_url() -> Option<String> {
    match std::env::var("ETL_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
            "ETL_TEST_POSTGRES is not set: CI runs the state tests against PostgreSQL \
             (.ci/run starts a server and sets it)"
        ),
        _ => {
            eprintln!(
                "note: ETL_TEST_POSTGRES is not set, the PostgreSQL half of this test is skipped"
            );
            None
        }
    }
}

/// A new, empty schema on the test server; returns a URL whose connections use it
/// (`options=-csearch_path=...`). Called outside any async runtime.
pub fn fresh_postgres_schema(base: &str, label: &str) -> String {
    let schema = format!(
        "t_{}_{}_{}",
        label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>()
            .to_ascii_lowercase(),
        std::process::id(),
        rand::random::<u32>()
    );
    let config = postgres::Config::from_str(base).expect("ETL_TEST_POSTGRES is a PostgreSQL URL");
    // On a thread of its own: the caller may be inside a tokio runtime.
    let sql = format!("CREATE SCHEMA {schema}");
    std::thread::spawn(move || {
        let mut client = config
            .connect(postgres::NoTls)
            .expect("the test PostgreSQL server accepts connections");
        client.batch_execute(&sql).expect("a test schema");
    })
    .join()
    .expect("creating the test schema");
    let mut url = url::Url::parse(base).expect("ETL_TEST_POSTGRES is a URL");
    url.query_pairs_mut()
        .append_pair("options", &format!("-csearch_path={schema}"));
    url.to_string()
}
