//! Group commit for webhook ingest.
//!
//! Every accepted webhook must be durable before its 2xx, and one commit (one WAL flush) per
//! request caps ingest at the database's commit rate. Handlers therefore hand validated
//! events to this batcher and wait; a few writer tasks each take whatever is pending (up to
//! `max_batch`) and write it in one transaction of two statements — the events
//! (`ON CONFLICT DO NOTHING`, so redeliveries write nothing) and their processing jobs — then
//! answer every request of the batch after the commit. Under light load a batch is one
//! request and nothing waits; under heavy load many requests share each commit.

use std::sync::Arc;

use pgfleet_payments::events::{self, EventRef, NewEvent};
use pgfleet_queue::Queue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::problem::ApiError;

/// A validated event to store.
#[derive(Debug)]
pub struct Incoming {
    /// Source.
    pub source: String,
    /// Provider's event id.
    pub event_id: String,
    /// Event type.
    pub kind: String,
    /// Body.
    pub payload: Value,
    /// Job kind that processes it.
    pub job_kind: String,
    /// The job's metadata (the request's trace context).
    pub metadata: Value,
}

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; its processing job.
    Accepted {
        /// The job id.
        job_id: i64,
    },
    /// Already stored earlier (or earlier in the same batch): nothing written.
    Duplicate,
}

struct Pending {
    event: Incoming,
    reply: oneshot::Sender<Result<Stored, String>>,
}

/// Handle on the batcher (cheap to clone).
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Pending>,
}

/// The unique key of an event's processing job.
pub fn job_key(source: &str, event_id: &str) -> String {
    format!("webhook:{source}:{event_id}")
}

impl Ingest {
    /// Starts `writers` writer tasks taking up to `max_batch` events per transaction.
    pub fn spawn(queue: Queue, job_queue: String, writers: usize, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Pending>(max_batch.max(1) * writers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            let (queue, job_queue, rx) = (queue.clone(), job_queue.clone(), rx.clone());
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(max_batch);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(p) => batch.push(p),
                            None => return,
                        }
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(p) => batch.push(p),
                                Err(_) => break,
                            }
                        }
                    }
                    write(&queue, &job_queue, &mut batch).await;
                }
            });
        }
        Self { tx }
    }

    /// Stores an event durably (or finds it stored) and returns what happened.
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] when the database failed (nothing was acknowledged).
    pub async fn submit(&self, event: Incoming) -> Result<Stored, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { event, reply })
            .await
            .map_err(|_| ApiError::Unavailable("ingest is shutting down".into()))?;
        rx.await
            .map_err(|_| ApiError::Unavailable("ingest writer stopped".into()))?
            .map_err(ApiError::Unavailable)
    }
}

async fn write(queue: &Queue, job_queue: &str, batch: &mut Vec<Pending>) {
    let result = write_batch(queue, job_queue, batch).await;
    for (p, r) in batch.drain(..).zip(
        result
            .into_iter()
            .chain(std::iter::repeat(Err(String::new()))),
    ) {
        let _ = p.reply.send(r);
    }
}

/// One transaction for the whole batch; returns one result per pending event, in order.
/// When the shared transaction fails, each event is written again on its own, so one event
/// the database refuses fails alone and its neighbours are stored.
async fn write_batch(
    queue: &Queue,
    job_queue: &str,
    batch: &[Pending],
) -> Vec<Result<Stored, String>> {
    match try_write(queue, job_queue, batch).await {
        Ok(r) => r,
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, events = batch.len(), "ingest batch failed; writing its events one by one");
            let mut out = Vec::with_capacity(batch.len());
            for one in batch.chunks(1) {
                out.push(match try_write(queue, job_queue, one).await {
                    Ok(mut r) => r.remove(0),
                    Err(e) => {
                        tracing::error!(error = %e, "ingest of one event failed; not acknowledged");
                        Err(e.to_string())
                    }
                });
            }
            out
        }
        Err(e) => {
            tracing::error!(error = %e, "ingest of one event failed; not acknowledged");
            vec![Err(e.to_string())]
        }
    }
}

async fn try_write(
    queue: &Queue,
    job_queue: &str,
    batch: &[Pending],
) -> Result<Vec<Result<Stored, String>>, pgfleet_queue::QueueError> {
    let events: Vec<NewEvent<'_>> = batch
        .iter()
        .map(|p| NewEvent {
            source: &p.event.source,
            event_id: &p.event.event_id,
            kind: &p.event.kind,
            payload: &p.event.payload,
        })
        .collect();
    let mut tx = queue.pool().begin().await?;
    let inserted: std::collections::HashMap<(String, String), i64> =
        events::insert_batch(&mut tx, &events)
            .await?
            .into_iter()
            .map(|(source, event_id, id)| ((source, event_id), id))
            .collect();
    // One job per newly stored event, in batch order (the first request of a duplicated id wins).
    let mut winners: Vec<usize> = Vec::new();
    let mut jobs = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for (i, p) in batch.iter().enumerate() {
        let key = (p.event.source.clone(), p.event.event_id.clone());
        if let Some(&row) = inserted.get(&key) {
            if taken.insert(key) {
                winners.push(i);
                jobs.push(
                    EventRef {
                        webhook_event_id: row,
                        source: p.event.source.clone(),
                        event_id: p.event.event_id.clone(),
                    }
                    .job(job_queue, &p.event.job_kind)?
                    .partition_key(&p.event.event_id)
                    .metadata(p.event.metadata.clone())
                    .unique_key(job_key(&p.event.source, &p.event.event_id)),
                );
            }
        }
    }
    let (enqueued, wakeups) = queue.enqueue_in(&mut tx, &jobs).await?;
    queue.commit_and_wake(tx, wakeups).await?;
    let mut out: Vec<Result<Stored, String>> = vec![Ok(Stored::Duplicate); batch.len()];
    for (i, e) in winners.into_iter().zip(enqueued) {
        out[i] = Ok(Stored::Accepted { job_id: e.id });
    }
    Ok(out)
}
