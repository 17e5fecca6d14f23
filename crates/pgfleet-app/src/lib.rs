//! # pgfleet-app
//!
//! The one place pgfleet is assembled. [`App::build`] turns an [`AppConfig`] into the
//! queue handles, the gateway, the workers and the autoscaled local pools; [`App::run`]
//! serves them until a shutdown token fires (the shape of mini-redis' and zero2prod's
//! `build` / `run`). The `pgfleet` binary is a clap layer over this crate, and the tests
//! start their gateways and workers through it too.
//!
//! [`kinds`] is the registration list: every job kind the product ships, each owned by its
//! domain crate, registered on one line.

pub mod app;
pub mod config;
pub mod database;
pub mod declared;
pub mod kinds;
pub mod local_pools;

pub use app::{App, AppError};
pub use config::AppConfig;
pub use kinds::Kinds;
