//! Logging in with SMTP AUTH: password schemes, the backends that check
//! credentials (the SQLite directory, a Dovecot auth socket), and the
//! per-client limiter that slows down guessing.

pub mod backend;
pub mod dovecot;
pub mod limiter;
pub mod md5crypt;
pub mod password;
