//! Controller tests: reconcile against an in-process fake API server (kube-fake-client)
//! with a real PostgreSQL behind the queue statistics; the CRD against its committed copy
//! and the samples; the watch wiring against tower-test mocks.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod crd;
mod reconcile;
mod watch;
