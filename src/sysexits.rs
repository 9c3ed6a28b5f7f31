//! Exit codes of sysexits(3), defined once: every command (`serve`,
//! `queue`, `user`, later `sendmail`) exits with these, so scripts and
//! cron can tell "try again" (75) from "fix the config" (78).

/// The command was used incorrectly (bad flags, arguments).
pub const EX_USAGE: i32 = 64;
/// The input data was bad (a malformed address, password, message).
pub const EX_DATAERR: i32 = 65;
/// An input file did not exist or was not readable.
pub const EX_NOINPUT: i32 = 66;
/// The named thing (user, message) does not exist.
pub const EX_NOUSER: i32 = 67;
/// A service is unavailable (the server is not running).
pub const EX_UNAVAILABLE: i32 = 69;
/// An internal software error.
pub const EX_SOFTWARE: i32 = 70;
/// An operating system error (cannot fork, cannot create a pipe).
pub const EX_OSERR: i32 = 71;
/// An output file could not be created.
pub const EX_CANTCREAT: i32 = 73;
/// An error while doing I/O on some file.
pub const EX_IOERR: i32 = 74;
/// A temporary failure: trying again later may work.
pub const EX_TEMPFAIL: i32 = 75;
/// A remote error in the protocol (garbage from the server).
pub const EX_PROTOCOL: i32 = 76;
/// Not permitted.
pub const EX_NOPERM: i32 = 77;
/// Something in the configuration is wrong.
pub const EX_CONFIG: i32 = 78;
