#!/usr/bin/env python3
"""A scriptable SMTP server (aiosmtpd) for postern's outbound tests.

Listens on 127.0.0.1 only. Each accepted message is written to DIR as
N.msg: lines "FROM addr", "RCPTS a b", "OPTIONS ...", "TLS yes|no",
"AUTH yes|no", a blank line, then the content exactly as received (after
dot-unstuffing, CRLF line ends). Prints "READY" on stdout once it accepts
connections; runs until killed.

Behaviour, by option:
  --tls CERT KEY        offer STARTTLS with this certificate
  --auth USER:PASS      offer AUTH PLAIN/LOGIN (inside TLS only), accept this
  --reject-rcpt PREFIX  550 5.1.1 for recipients starting with PREFIX
  --defer-rcpt PREFIX   450 4.2.0 (greylisting) for them
  --data-reply REPLY    answer the end of data with REPLY instead of 250
  --stall-data          never answer the end of data
  --drop-at-mail        close the connection when MAIL arrives
  --size N              announce and enforce SIZE N
"""

import argparse
import asyncio
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", nargs=2)
    p.add_argument("--auth")
    p.add_argument("--reject-rcpt")
    p.add_argument("--defer-rcpt")
    p.add_argument("--data-reply")
    p.add_argument("--stall-data", action="store_true")
    p.add_argument("--drop-at-mail", action="store_true")
    p.add_argument("--size", type=int, default=33554432)
    a = p.parse_args()
    counter = [0]

    class Handler:
        async def handle_MAIL(self, server, session, envelope, address, options):
            if a.drop_at_mail:
                server.transport.close()
                return "421 4.3.0 going away"
            envelope.mail_from = address
            envelope.mail_options.extend(options)
            return "250 2.1.0 Ok"

        async def handle_RCPT(self, server, session, envelope, address, options):
            if a.reject_rcpt and address.startswith(a.reject_rcpt):
                return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
            if a.defer_rcpt and address.startswith(a.defer_rcpt):
                return "450 4.2.0 <%s>: Recipient address rejected: Greylisted" % address
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"

        async def handle_DATA(self, server, session, envelope):
            if a.stall_data:
                await asyncio.sleep(3600)
            if a.data_reply:
                return a.data_reply
            counter[0] += 1
            head = "FROM %s\nRCPTS %s\nOPTIONS %s\nTLS %s\nAUTH %s\n\n" % (
                envelope.mail_from,
                " ".join(envelope.rcpt_tos),
                " ".join(envelope.mail_options),
                "yes" if session.ssl is not None else "no",
                "yes" if session.authenticated else "no",
            )
            tmp = os.path.join(a.dir, ".%d.tmp" % counter[0])
            with open(tmp, "wb") as f:
                f.write(head.encode("utf-8") + envelope.original_content)
            os.rename(tmp, os.path.join(a.dir, "%d.msg" % counter[0]))
            return "250 2.0.0 Ok: queued as SINK%d" % counter[0]

    kwargs = {"enable_SMTPUTF8": True, "data_size_limit": a.size}
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
        kwargs["tls_context"] = ctx
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, data):
            ok = (
                isinstance(data, LoginPassword)
                and data.login == user.encode()
                and data.password == password.encode()
            )
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_require_tls"] = True
    c = Controller(Handler(), hostname="127.0.0.1", port=a.port, **kwargs)
    c.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()


if __name__ == "__main__":
    sys.exit(main())
