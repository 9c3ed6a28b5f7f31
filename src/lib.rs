//! postern: a small mail transfer agent for always-on boxes.
//!
//! Data takes one road: listener → SMTP session (pure) → policy and
//! directory lookups → queue (durable) → routing → delivery agent → result
//! per recipient. See README.md for what it does and DESIGN notes in each
//! module for what it owns.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
#[cfg(feature = "convert")]
pub mod convert;
pub mod deliver;
pub mod directory;
pub mod dkim;
pub mod dns;
pub mod explain;
pub mod fsutil;
pub mod import;
pub mod intake;
pub mod log;
pub mod outbound;
pub mod policy;
pub mod pool;
pub mod privs;
pub mod queue;
pub mod route;
pub mod sendmail;
pub mod server;
pub mod smtp;
pub mod space;
pub mod status;
pub mod sysexits;
pub mod timefmt;
pub mod tls;
