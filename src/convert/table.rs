//! The one table of Postfix parameters the converter knows: for each, the
//! postern key it becomes, or why it has none. The converter reports
//! every parameter of main.cf (and every `-o` override) through it, and
//! README's "Coming from Postfix" table is printed from it
//! (`postern convert --table`; a test keeps the two equal).
//!
//! A parameter not in the table is reported as unknown: the converter
//! never drops a setting silently.

/// What becomes of one Postfix parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Written as this postern key (or keys).
    Key(&'static str),
    /// Nothing to write: postern behaves this way by itself.
    BuiltIn(&'static str),
    /// Means nothing for postern (paths of Postfix's own programs, ...).
    Irrelevant(&'static str),
    /// Changes what Postfix does, and postern cannot do it.
    Unsupported(&'static str),
}

pub struct Row {
    pub param: &'static str,
    pub fate: Fate,
    /// The Postfix default: a value equal to it is not reported; for a
    /// built-in row, another value is reported as not supported.
    pub default: Option<&'static str>,
}

const fn key(param: &'static str, to: &'static str) -> Row {
    Row {
        param,
        fate: Fate::Key(to),
        default: None,
    }
}
const fn built(param: &'static str, how: &'static str) -> Row {
    Row {
        param,
        fate: Fate::BuiltIn(how),
        default: None,
    }
}
/// Built in for the Postfix default only: another value is reported.
const fn built_if(param: &'static str, how: &'static str, default: &'static str) -> Row {
    Row {
        param,
        fate: Fate::BuiltIn(how),
        default: Some(default),
    }
}
const fn irrelevant(param: &'static str, why: &'static str) -> Row {
    Row {
        param,
        fate: Fate::Irrelevant(why),
        default: None,
    }
}
const fn unsupported(param: &'static str, why: &'static str, default: Option<&'static str>) -> Row {
    Row {
        param,
        fate: Fate::Unsupported(why),
        default,
    }
}

const PROGRAM: &str = "Postfix's own programs and files; postern is one binary";
const DOCS: &str = "Postfix's documentation";

/// Every parameter the converter knows, in README order.
pub const TABLE: &[Row] = &[
    key("myhostname", "`hostname`"),
    built("mydomain", "only used in `$mydomain` expansions"),
    key("myorigin", "`origin`"),
    key("mydestination", "`local_domains`"),
    key("mynetworks", "`trusted_networks` (master.cf `-o mynetworks=`: `[[listener]] trusted_networks`)"),
    unsupported("mynetworks_style", "only used without `mynetworks`; postern then trusts loopback only: list the networks in `trusted_networks`", Some("host")),
    key("inet_interfaces", "`[[listener]] address`"),
    key("inet_protocols", "`[[listener]] address` (`0.0.0.0` and/or `[::]`)"),
    built_if("unknown_local_recipient_reject_code", "unknown recipients are refused at RCPT with 550 5.1.1", "550"),
    built("smtpd_banner", "always `220 <hostname> ESMTP`, no software name"),
    irrelevant("mail_name", "postern never names its software in replies or headers"),
    key("smtpd_recipient_restrictions", "built in: trusted networks and logged-in clients relay anywhere, others only to our domains; the reinject listener takes only its trusted networks"),
    key("smtpd_relay_restrictions", "as `smtpd_recipient_restrictions`"),
    key("smtpd_client_restrictions", "`permit_sasl_authenticated, reject` on a service: `[[listener]] require_auth = true`; other checks are not supported"),
    unsupported("smtpd_helo_restrictions", "HELO checks are not supported", Some("")),
    unsupported("smtpd_sender_restrictions", "sender checks are not supported", Some("")),
    unsupported("smtpd_restriction_classes", "restriction classes are not supported", Some("")),
    built("relay_domains", "`$mydestination`: nothing more; other domains: `domain.backupmx = 1` rows (PostfixAdmin) or `[[relay.route]]`"),
    key("alias_maps", "`[directory] aliases_file` (aliases(5) text, no .db)"),
    irrelevant("alias_database", "postern reads the aliases file itself; `newaliases` only checks it"),
    key("home_mailbox", "`[delivery] home_mailbox`"),
    key("mailbox_command", "`[delivery] mailbox_command`"),
    key("header_checks", "`[content] header_rules` (Postfix regexp: syntax, copied inline)"),
    key("mime_header_checks", "`[content] mime_header_checks`"),
    key("body_checks", "`[content] body_checks`"),
    unsupported("nested_header_checks", "rules for attached messages' headers are not supported", Some("$header_checks")),
    key("smtpd_sasl_auth_enable", "`[auth] backend` (`no`: `\"none\"`)"),
    key("smtpd_sasl_type", "`[auth] backend`: `dovecot` with a PostfixAdmin directory becomes `\"sqlite\"` (the same passwords, checked by postern)"),
    key("smtpd_sasl_path", "`[auth] dovecot_socket` (when the backend stays `\"dovecot\"`)"),
    irrelevant("smtpd_sasl_local_domain", "postern's users log in with their full address"),
    built("smtpd_sasl_security_options", "`noanonymous`: AUTH offers PLAIN and LOGIN only"),
    key("smtpd_sasl_authenticated_header", "`[auth] authenticated_header`"),
    key("broken_sasl_auth_clients", "`[auth] broken_clients`"),
    key("smtpd_helo_required", "`[smtp] helo_required`"),
    key("disable_vrfy_command", "`[smtp] vrfy = false` (VRFY answers 252)"),
    key("smtpd_use_tls", "`[[listener]] mode = \"starttls\"`"),
    key("smtpd_tls_security_level", "`[[listener]] mode` (`may`, `encrypt`: `\"starttls\"`)"),
    key("smtpd_enforce_tls", "`[[listener]] mode = \"starttls\"`"),
    key("smtpd_tls_wrappermode", "`[[listener]] mode = \"implicit-tls\"`"),
    key("smtpd_tls_auth_only", "`[auth] tls_only`"),
    key("smtpd_tls_cert_file", "`[tls] cert_file`"),
    key("smtpd_tls_key_file", "`[tls] key_file`"),
    built("smtpd_tls_session_cache_database", "TLS session resumption in memory"),
    irrelevant("smtpd_tls_CAfile", "postern asks clients for no certificate"),
    irrelevant("smtpd_tls_CApath", "postern asks clients for no certificate"),
    built("smtpd_tls_protocols", "TLS 1.2 and 1.3 only (rustls)"),
    built("smtpd_tls_mandatory_protocols", "TLS 1.2 and 1.3 only (rustls)"),
    built("smtp_tls_protocols", "TLS 1.2 and 1.3 only (rustls)"),
    built("smtp_tls_mandatory_protocols", "TLS 1.2 and 1.3 only (rustls)"),
    built("smtpd_tls_mandatory_ciphers", "rustls's modern AEAD ciphers only"),
    built("smtpd_tls_ciphers", "rustls's modern AEAD ciphers only"),
    built("tls_preempt_cipherlist", "rustls's modern AEAD ciphers only"),
    built("smtpd_tls_eecdh_grade", "rustls's key exchanges"),
    built("smtpd_tls_dh1024_param_file", "rustls has no finite-field DH"),
    unsupported("smtpd_tls_received_header", "the TLS version and cipher are not written into Received:", Some("no")),
    irrelevant("tls_random_source", "postern uses the system's randomness"),
    key("message_size_limit", "`[smtp] message_size_limit`"),
    key("smtpd_recipient_limit", "`[smtp] recipient_limit`"),
    key("smtpd_soft_error_limit", "`[smtp] soft_error_limit`"),
    key("smtpd_hard_error_limit", "`[smtp] hard_error_limit`"),
    key("smtpd_error_sleep_time", "`[smtp] error_delay`"),
    key("smtpd_timeout", "`[smtp] command_timeout`"),
    key("default_process_limit", "`[smtp] max_connections`"),
    key("smtpd_client_connection_count_limit", "`[smtp] max_connections_per_client`"),
    key("recipient_delimiter", "`recipient_delimiter`"),
    key("hopcount_limit", "`[delivery] max_received_headers`"),
    key("local_transport", "`local`: built in (aliases file, then local users)"),
    key("virtual_transport", "`[delivery] virtual_transport` (a pipe service: a `[[transport]]`)"),
    key("virtual_mailbox_domains", "`[sync.mysql]` (domain table) into `[directory] database`"),
    key("virtual_mailbox_maps", "`[sync.mysql]` (mailbox table, `maildir` column)"),
    key("virtual_alias_maps", "`[sync.mysql]` (alias table, `goto` column)"),
    built_if("virtual_alias_domains", "`$virtual_alias_maps`: the domain and alias_domain tables", "$virtual_alias_maps"),
    key("virtual_mailbox_base", "`[delivery] mailbox_base`"),
    key("virtual_uid_maps", "`[delivery] uid` (`static:N` only)"),
    key("virtual_gid_maps", "`[delivery] gid` (`static:N` only)"),
    key("virtual_minimum_uid", "`[delivery] minimum_uid`"),
    key("virtual_overquota_bounce", "`[quota] over_quota`"),
    key("virtual_mailbox_limit_maps", "mailbox.quota of the directory (mysql), else `[quota] limits_file`"),
    built("virtual_mailbox_limit_override", "a mailbox's own quota always wins"),
    unsupported("virtual_mailbox_limit_inbox", "postern counts the whole Maildir++ (`maildirsize`, as Dovecot does), not INBOX alone", Some("no")),
    built("virtual_maildir_extended", "postern always keeps `maildirsize` and `,S=` names"),
    key("content_filter", "`[content] filter` (`[[listener]] filter` for `-o content_filter=`)"),
    key("receive_override_options", "`no_address_mappings`: aliases expand after the filter (`role = \"reinject\"`)"),
    built("smtpd_authorized_xforward_hosts", "the reinject listener accepts XFORWARD from its trusted networks"),
    built("smtp_send_xforward_command", "the content filter is always sent XFORWARD"),
    key("smtp_data_done_timeout", "`[relay] data_done_timeout`; in the filter's service `[content] filter_data_timeout`"),
    key("default_transport", "`[relay] default` (`smtp:`/`relay:` with no next hop: `\"mx\"`)"),
    key("relayhost", "`[relay] default`"),
    key("transport_maps", "`[[relay.route]]`"),
    key("fallback_relay", "`[[relay.route]] fallback` (master.cf `-o` of the route's service)"),
    key("smtp_fallback_relay", "`[[relay.route]] fallback`"),
    key("smtp_host_lookup", "`[relay] host_lookup`"),
    key("disable_dns_lookups", "`[relay] host_lookup = [\"native\"]`; in the filter's service: built in"),
    key("smtp_sasl_password_maps", "`[relay] credentials_file`"),
    built("smtp_sasl_auth_enable", "credentials are used when `credentials_file` has the relay"),
    key("smtp_tls_security_level", "`[relay] tls`"),
    key("smtp_use_tls", "`[relay] tls = \"may\"`"),
    key("smtp_tls_CAfile", "`[relay] ca_file`"),
    unsupported("smtp_tls_CApath", "a directory of CA certificates: give one PEM file in `[relay] ca_file`", Some("")),
    built("smtp_tls_session_cache_database", "TLS session resumption in memory"),
    built("smtp_sasl_security_options", "relay logins use PLAIN or LOGIN, inside TLS only"),
    built("smtp_sasl_tls_security_options", "relay logins use PLAIN or LOGIN, inside TLS only"),
    unsupported("sender_dependent_relayhost_maps", "relays per sender are not supported; routes are per recipient domain", Some("")),
    key("smtp_connect_timeout", "`[relay] connect_timeout`"),
    key("smtp_helo_name", "`[relay] helo_name`"),
    key("proxy_interfaces", "`[relay] own_addresses`"),
    key("minimal_backoff_time", "`[queue] min_backoff`"),
    key("maximal_backoff_time", "`[queue] max_backoff`"),
    key("maximal_queue_lifetime", "`[queue] max_lifetime`"),
    key("delay_warning_time", "`[queue] delay_warning`"),
    key("queue_minfree", "`[queue] min_free`"),
    key("qmgr_message_active_limit", "`[queue] active_limit`"),
    built("procmail_destination_recipient_limit", "a pipe whose argv names a recipient macro runs once per recipient"),
    unsupported("append_dot_mydomain", "addresses are never rewritten to user@host.$mydomain", Some("no")),
    unsupported("masquerade_domains", "address masquerading is not supported", Some("")),
    unsupported("canonical_maps", "address rewriting is not supported", Some("")),
    unsupported("sender_canonical_maps", "address rewriting is not supported", Some("")),
    unsupported("recipient_canonical_maps", "address rewriting is not supported", Some("")),
    unsupported("relocated_maps", "\"user has moved\" bounces are not supported", Some("")),
    unsupported("always_bcc", "automatic BCC is not supported", Some("")),
    unsupported("sender_bcc_maps", "automatic BCC is not supported", Some("")),
    unsupported("recipient_bcc_maps", "automatic BCC is not supported", Some("")),
    unsupported("luser_relay", "unknown local users are refused, not forwarded", Some("")),
    unsupported("mailbox_transport", "local users get a Maildir or `mailbox_command`", Some("")),
    unsupported("fallback_transport", "local users get a Maildir or `mailbox_command`", Some("")),
    unsupported("mailbox_size_limit", "no size limit per mbox file: Maildirs, with quotas (`[quota]`)", Some("51200000")),
    unsupported("smtpd_milters", "milters are not supported: an after-queue content filter is (`[content] filter`)", Some("")),
    unsupported("non_smtpd_milters", "milters are not supported", Some("")),
    unsupported("smtpd_data_restrictions", "DATA checks are not supported", Some("")),
    unsupported("strict_rfc821_envelopes", "postern accepts what RFC 5321 allows", Some("no")),
    unsupported("bounce_queue_lifetime", "bounces live as long as other mail (`[queue] max_lifetime`)", Some("5d")),
    unsupported("header_size_limit", "headers are limited by the message size and line length only", Some("102400")),
    irrelevant("maillog_file", "postern logs to standard error (journald)"),
    irrelevant("smtp_tls_note_starttls_offer", "postern logs what it needs"),
    irrelevant("queue_directory", "postern's queue is `[queue] directory`"),
    irrelevant("data_directory", "postern's state is under `data_dir`"),
    irrelevant("command_directory", PROGRAM),
    irrelevant("daemon_directory", PROGRAM),
    irrelevant("meta_directory", PROGRAM),
    irrelevant("shlib_directory", PROGRAM),
    irrelevant("config_directory", "converted from; postern has one TOML file"),
    irrelevant("mail_owner", "postern runs as the user systemd starts it as"),
    irrelevant("setgid_group", "`sendmail` reaches postern through its submission socket"),
    irrelevant("sendmail_path", "`postern sendmail` (or a `sendmail` link to postern)"),
    irrelevant("newaliases_path", "`postern newaliases` (or a link)"),
    irrelevant("mailq_path", "`postern mailq` (or a link)"),
    irrelevant("html_directory", DOCS),
    irrelevant("manpage_directory", DOCS),
    irrelevant("sample_directory", DOCS),
    irrelevant("readme_directory", DOCS),
    irrelevant("debugger_command", "postern has no debugger hook"),
    unsupported("debug_peer_list", "per-client verbose logging is not supported", Some("")),
    irrelevant("debug_peer_level", "only used with `debug_peer_list`"),
    irrelevant("compatibility_level", "Postfix's own upgrade switch"),
    irrelevant("biff", "no comsat notifications"),
    irrelevant("syslog_name", "postern logs to stderr/journald as `postern`"),
    irrelevant("smtpd_tls_loglevel", "postern logs TLS failures by itself"),
    irrelevant("smtp_tls_loglevel", "postern logs TLS failures by itself"),
];

/// The row of `param`, if the converter knows it.
pub fn lookup(param: &str) -> Option<&'static Row> {
    TABLE.iter().find(|r| r.param == param)
}

/// master.cf services that are Postfix's own machinery: nothing to convert.
pub const INTERNAL_SERVICES: &[&str] = &[
    "pickup",
    "cleanup",
    "qmgr",
    "oqmgr",
    "tlsmgr",
    "rewrite",
    "bounce",
    "defer",
    "trace",
    "verify",
    "flush",
    "proxymap",
    "proxywrite",
    "showq",
    "error",
    "retry",
    "discard",
    "local",
    "virtual",
    "lmtp",
    "anvil",
    "scache",
    "postlog",
    "smtp",
    "relay",
    "maildrop",
    "uucp",
    "ifmail",
    "bsmtp",
    "scalemail-backend",
    "mailman",
    "postscreen",
    "smtpd",
    "dnsblog",
    "tlsproxy",
];

/// The README table: `| Postfix | postern |` rows, one per parameter.
pub fn markdown() -> String {
    let mut out = String::from("| Postfix | postern |\n|---|---|\n");
    for r in TABLE {
        let to = match r.fate {
            Fate::Key(k) => k.to_string(),
            Fate::BuiltIn(how) => format!("built in: {how}"),
            Fate::Irrelevant(why) => format!("irrelevant: {why}"),
            Fate::Unsupported(why) => format!("**not supported**: {why}"),
        };
        out.push_str(&format!("| `{}` | {} |\n", r.param, to.replace('|', "\\|")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_once() {
        for (i, r) in TABLE.iter().enumerate() {
            assert!(
                TABLE[..i].iter().all(|o| o.param != r.param),
                "{} twice",
                r.param
            );
        }
    }

    #[test]
    fn markdown_has_a_row_per_parameter() {
        assert_eq!(markdown().lines().count(), TABLE.len() + 2);
    }
}
