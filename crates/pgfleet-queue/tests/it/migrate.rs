use pgfleet_queue::migrate::{installed_partitions, is_up_to_date, migrate};
use pgfleet_queue::QueueError;
use pgfleet_testkit::TestDb;

#[tokio::test]
async fn concurrent_migrations_are_safe_and_idempotent() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(!is_up_to_date(&db.pool).await?);
    assert!(matches!(
        installed_partitions(&db.pool).await,
        Err(QueueError::NotMigrated)
    ));
    let mut runs = Vec::new();
    for _ in 0..6 {
        let pool = db.new_pool(2).await?;
        runs.push(tokio::spawn(async move { migrate(&pool, Some(16)).await }));
    }
    for r in runs {
        assert_eq!(r.await??.get(), 16);
    }
    assert!(is_up_to_date(&db.pool).await?);
    // Running again changes nothing; the bookkeeping table lives in our schema.
    migrate(&db.pool, None).await?;
    let in_public: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&db.pool)
            .await?;
    assert!(
        !in_public,
        "sqlx bookkeeping must not collide with the app's own migrations"
    );
    Ok(())
}

#[tokio::test]
async fn partition_count_is_fixed_at_install() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert_eq!(migrate(&db.pool, Some(8)).await?.get(), 8);
    assert_eq!(migrate(&db.pool, None).await?.get(), 8);
    let err = migrate(&db.pool, Some(32)).await.unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::PartitionCountMismatch {
                installed: 8,
                requested: 32
            }
        ),
        "{err}"
    );
    assert!(migrate(&db.pool, Some(0)).await.is_err());
    Ok(())
}
