//! Typed kinds: arguments decoded for the handler, typed failures mapped to dispositions,
//! undecodable arguments discarded at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgfleet_queue::{Job, JobArgs, JobState, KindDefaults, NewJob};
use pgfleet_testkit::eventually;
use pgfleet_worker::{Disposition, JobContext, JobFailure, JobHandler, Registry};
use serde_json::json;

use crate::{fast_config, setup, start};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Charge {
    account: String,
    cents: i64,
}

impl JobArgs for Charge {
    const KIND: &'static str = "test.charge";
    fn defaults() -> KindDefaults {
        KindDefaults {
            queue: "q",
            max_attempts: 3,
            ..KindDefaults::DEFAULT
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ChargeError {
    #[error("card declined")]
    Declined,
    #[error("bank busy")]
    Busy,
    #[error("bank asks to wait")]
    Later,
}

impl JobFailure for ChargeError {
    fn disposition(&self) -> Disposition {
        match self {
            ChargeError::Declined => Disposition::Permanent,
            ChargeError::Busy => Disposition::Retry,
            ChargeError::Later => Disposition::Snooze(Duration::from_millis(100)),
        }
    }
}

/// Records what it was given; fails as the account name says, once only for `busy` and
/// `later`.
#[derive(Clone, Default)]
struct Bank {
    charged: Arc<Mutex<Vec<(String, i64, i32)>>>,
    snoozed: Arc<AtomicBool>,
}

impl JobHandler for Bank {
    type Args = Charge;
    type Error = ChargeError;

    async fn run(&self, args: Charge, job: &Job, _ctx: &JobContext) -> Result<(), ChargeError> {
        match (args.account.as_str(), job.attempt) {
            ("declined", _) => return Err(ChargeError::Declined),
            ("busy", 1) => return Err(ChargeError::Busy),
            ("later", _) if !self.snoozed.swap(true, Ordering::SeqCst) => {
                return Err(ChargeError::Later)
            }
            _ => {}
        }
        self.charged
            .lock()
            .unwrap()
            .push((args.account, args.cents, job.attempt));
        Ok(())
    }
}

#[tokio::test]
async fn a_typed_kind_gets_its_arguments_and_its_errors_decide_the_retry() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let bank = Bank::default();
    let mut registry = Registry::new();
    registry.add(bank.clone());
    let w = start(&db, fast_config(&["q"]), registry).await?;
    let charge = |account: &str| Charge {
        account: account.into(),
        cents: 1999,
    };
    let ok = queue.enqueue_args(&charge("ada")).await?.id;
    let busy = queue.enqueue_args(&charge("busy")).await?.id;
    let declined = queue.enqueue_args(&charge("declined")).await?.id;
    let later = queue.enqueue_args(&charge("later")).await?.id;
    // Written by another language with the wrong shape: cannot ever decode.
    let garbled = queue
        .enqueue(NewJob::new("q", "test.charge").payload(json!({"account": 7})))
        .await?
        .id;
    eventually("all finished", Duration::from_secs(15), || async {
        let mut done = 0;
        for id in [ok, busy, declined, later, garbled] {
            done += usize::from(queue.get_job(id).await?.state.is_final());
        }
        Ok((done == 5).then_some(()))
    })
    .await?;
    let job = |id| {
        let q = queue.clone();
        async move { anyhow::Ok(q.get_job(id).await?) }
    };
    let (ok, busy, declined, later, garbled) = (
        job(ok).await?,
        job(busy).await?,
        job(declined).await?,
        job(later).await?,
        job(garbled).await?,
    );
    assert_eq!(ok.state, JobState::Completed);
    assert_eq!(ok.max_attempts, 3, "the kind's defaults apply");
    assert_eq!((busy.state, busy.attempt), (JobState::Completed, 2));
    assert_eq!(busy.errors[0]["error"], "bank busy");
    assert_eq!((declined.state, declined.attempt), (JobState::Discarded, 1));
    assert_eq!(declined.errors[0]["error"], "card declined");
    assert_eq!(later.state, JobState::Completed, "a snooze runs again");
    assert_eq!(
        (later.attempt, later.max_attempts),
        (2, 4),
        "a snooze does not spend an attempt: the limit moves with it"
    );
    assert_eq!(garbled.state, JobState::Discarded);
    assert_eq!(garbled.attempt, 1, "undecodable arguments are not retried");
    let reason = garbled.errors[0]["error"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("the payload is not valid test.charge arguments: account: invalid type"),
        "{reason}"
    );
    let mut charged = bank.charged.lock().unwrap().clone();
    charged.sort();
    assert_eq!(
        charged,
        [
            ("ada".to_owned(), 1999, 1),
            ("busy".to_owned(), 1999, 2),
            ("later".to_owned(), 1999, 2),
        ]
    );
    w.stop().await
}
