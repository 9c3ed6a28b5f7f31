//! The queue: durable storage of accepted mail (spool), its file formats
//! (envelope), IDs, the retry schedule, bounces (dsn) and the runner that
//! hands queued mail to delivery.

pub mod dsn;
pub mod envelope;
pub mod id;
pub mod runner;
pub mod schedule;
pub mod spool;
