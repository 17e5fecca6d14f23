//! TLS to PostgreSQL: `sslmode=require` and `sslmode=verify-full` URLs work (sqlx with
//! rustls), the connection really is encrypted, and verification really checks the chain.

use std::path::Path;
use std::process::Command;

use pgfleet_pgembed::{Cluster, EmbedConfig};

use crate::{pgfleet, stderr};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate it signed for 127.0.0.1 and localhost, and an unrelated CA.
fn certificates(dir: &Path) {
    for ca in ["ca", "other"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN=pgfleet test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.cnf",
            "-out",
            "server.pem",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

#[tokio::test]
async fn sslmode_require_and_verify_full_urls_work() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "pgfleet-tls-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    certificates(&dir);
    let d = dir.display();
    let cluster = Cluster::start(&EmbedConfig {
        dir: dir.clone(),
        temporary: true,
        fast_unsafe: true,
        port: None,
        settings: vec![
            "ssl=on".into(),
            format!("ssl_cert_file={d}/server.pem"),
            format!("ssl_key_file={d}/server.key"),
        ],
    })?;
    let base = cluster.url("postgres");

    let require = format!("{base}?sslmode=require");
    let out = pgfleet(&require, &["migrate"]);
    assert!(out.status.success(), "sslmode=require: {}", stderr(&out));

    let verified = format!("{base}?sslmode=verify-full&sslrootcert={d}/ca.pem");
    let out = pgfleet(&verified, &["status", "--json"]);
    assert!(
        out.status.success(),
        "sslmode=verify-full: {}",
        stderr(&out)
    );
    let pool = sqlx::PgPool::connect(&verified).await?;
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await?;
    assert!(encrypted, "the connection is TLS");
    pool.close().await;

    // A chain that does not lead to the trusted CA is refused.
    let wrong = format!("{base}?sslmode=verify-full&sslrootcert={d}/other.pem");
    let out = pgfleet(&wrong, &["status"]);
    assert!(
        !out.status.success(),
        "verify-full with another CA must fail"
    );
    let err = stderr(&out).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer") || err.contains("tls"),
        "{err}"
    );
    Ok(())
}
