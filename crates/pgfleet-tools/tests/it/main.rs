//! The developer tools, run as the `pgfleet-tools` binary (`pgfleet bench ...` runs the same
//! binary; its tests are in the `pgfleet` crate).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use pgfleet_testkit::TestDb;

/// Runs `pgfleet-tools <args>` to completion.
fn tools(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgfleet-tools"))
        .args(args)
        .env("PGFLEET_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pgfleet-tools")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn faker_inserts_unsent_messages_with_their_jobs() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let out = tools(&db.url, &["faker", "--messages", "1200", "--batch", "500"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("inserted 1200 unsent messages"));
    let (messages, unsent, jobs): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pgfleet.messages), \
                (SELECT count(*) FROM pgfleet.messages WHERE sent_at IS NULL), \
                (SELECT count(*) FROM pgfleet.jobs WHERE kind = 'messages.deliver')",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!((messages, unsent, jobs), (1200, 1200, 1200));
    Ok(())
}

#[test]
fn every_tool_answers_its_help() {
    for tool in ["bench", "chaos", "loadsim", "faker"] {
        let out = tools("", &[tool, "--help"]);
        assert!(out.status.success(), "{tool}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: pgfleet-tools"));
    }
}
