//! # pgfleet-controller
//!
//! The Kubernetes side of pgfleet: the `WorkerPool` CRD ([`crd`]), the autoscaling policy as
//! a pure function ([`scaling`]), the Deployment a pool owns ([`deployment`]), queue
//! statistics per pool from PostgreSQL ([`observe`]), and the reconciler with leader
//! election ([`reconcile`], [`run`]). The same policy drives local workers in `pgfleet dev`.

pub mod cadence;
pub mod crd;
pub mod deployment;
pub mod metrics;
pub mod observe;
pub mod outcome;
pub mod reconcile;
pub mod run;
pub mod scaling;
pub mod uninstall;

pub use crd::{WorkerPool, WorkerPoolSpec, WorkerPoolStatus};
pub use metrics::ControllerMetrics;
