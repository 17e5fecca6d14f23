//! Slow clients and page sizes: a client that never finishes its headers is disconnected; a
//! request whose body stalls is answered 408 problem+json; every list refuses a page over
//! 1,000.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{spawn_gateway_with, ADMIN_KEY};

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() -> anyhow::Result<()> {
    let g = spawn_gateway_with(|c| c.header_read_timeout = Duration::from_secs(1)).await?;
    let addr = g.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await?;
    // The server closes the connection once the header timeout passes (read returns EOF or
    // an error); it would otherwise wait for ever.
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the stalled connection was closed");
    // Everyone else is served meanwhile and after.
    let r = g.http.get(format!("{}/healthz", g.base)).send().await?;
    assert_eq!(r.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_stalled_body_gets_408_problem_json_and_writes_nothing() -> anyhow::Result<()> {
    let g = spawn_gateway_with(|c| c.timeout = Duration::from_secs(1)).await?;
    let addr = g.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"kind\":"
    );
    s.write_all(head.as_bytes()).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("{}"))?;
    assert_eq!(body["status"], 408);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs")
        .fetch_one(&g.db.pool)
        .await?;
    assert_eq!(jobs, 0);
    Ok(())
}

#[tokio::test]
async fn every_list_refuses_pages_over_1000() -> anyhow::Result<()> {
    let g = spawn_gateway_with(|_| {}).await?;
    for path in [
        "/v1/jobs?limit=1001",
        "/v1/notifications?limit=5000",
        "/v1/messages?limit=0",
    ] {
        let r = g
            .http
            .get(format!("{}{path}", g.base))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?;
        assert_eq!(r.status(), 422, "{path}");
        let p: Value = r.json().await?;
        assert_eq!(p["field"], "limit", "{path}: {p}");
    }
    let r = g
        .http
        .get(format!("{}/v1/jobs?limit=1000", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    Ok(())
}
