//! Password hashes as PostfixAdmin and Dovecot store them (being written).
