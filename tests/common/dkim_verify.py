#!/usr/bin/env python3
"""Verifies every DKIM-Signature of a message with dkimpy (RFC 6376, and
RFC 8463 Ed25519 through PyNaCl), the keys asked of one name server: the
tests' dnsmasq on loopback, through dnspython. The TXT strings of a record
are joined without spaces, as RFC 6376 3.6.2.2 says.

usage: dkim_verify.py --dns 127.0.0.1:PORT FILE

Prints one line per signature, top first: "ok d=... s=... a=... c=..." or
"fail d=... s=...: why"; "none" for a message without a signature. Exits 0
when it could check (whatever the verdicts), 2 on a usage error.
"""

import argparse
import logging
import sys

import dkim
import dns.resolver


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dns", required=True, help="HOST:PORT of the name server")
    p.add_argument("file")
    a = p.parse_args()
    host, _, port = a.dns.rpartition(":")

    def dnsfunc(name, timeout=5):
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [host]
        r.port = int(port)
        r.lifetime = timeout
        if isinstance(name, bytes):
            name = name.decode()
        try:
            answer = r.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    message = open(a.file, "rb").read()
    d = dkim.DKIM(message)
    sigs = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
    if not sigs:
        print("none")
        return 0
    for i, raw in enumerate(sigs):
        tags = dkim.util.parse_tag_value(raw)
        name = "d=%s s=%s a=%s c=%s" % (
            tags.get(b"d", b"?").decode(),
            tags.get(b"s", b"?").decode(),
            tags.get(b"a", b"?").decode(),
            tags.get(b"c", b"simple").decode(),
        )
        messages = []

        class Collect(logging.Handler):
            def emit(self, record):
                messages.append(record.getMessage())

        log = logging.getLogger("dkim-verify-%d" % i)
        log.addHandler(Collect())
        log.setLevel(logging.DEBUG)
        log.propagate = False
        v = dkim.DKIM(message, logger=log)
        try:
            ok = v.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            ok = False
            messages.append(str(e))
        if ok:
            print("ok " + name)
        else:
            why = "; ".join(m for m in messages if "fail" in m.lower() or "error" in m.lower() or "mismatch" in m.lower())
            print("fail %s: %s" % (name, why or "; ".join(messages[-3:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
