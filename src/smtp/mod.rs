//! The SMTP protocol, pure: commands, addresses, replies, the DATA decoder,
//! the server session state machine and the trace header. Nothing in here
//! touches a socket, a file or the clock (a test in tests/ checks it).

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod received;
pub mod reply;
pub mod sasl;
pub mod session;
