#!/usr/bin/env python3
"""A scriptable SMTP server (aiosmtpd) for postern's outbound tests.

Listens on one loopback address (127.0.0.1 unless --host says another
127.x.y.z, so that several sinks can share a port as different "hosts").
Each accepted message is written to DIR as N.msg: lines "FROM addr",
"RCPTS a b", "OPTIONS ...", "TLS yes|no", "AUTH yes|no", "CONN n" (the
connection it came over, from 1), a blank line, then the content exactly
as received (after dot-unstuffing, CRLF line ends). DIR/events gets one
line per event, as it happens: "connect N", "starttls N", "auth N ok|fail",
"rcpt N ADDR CODE". Prints "READY" on stdout once it accepts connections;
runs until killed.

Behaviour, by option:
  --host ADDR           the address to listen on (a loopback address)
  --tls CERT KEY        offer STARTTLS with this certificate
  --auth USER:PASS      offer AUTH PLAIN/LOGIN (inside TLS only), accept this
  --auth-plaintext      offer AUTH outside TLS too (a server a careless
                        client would send its password to in clear)
  --tls-broken          answer STARTTLS with 220, then send bytes that are
                        not TLS and hang up (a failed handshake); needs --tls
  --reject-rcpt PREFIX  550 5.1.1 for recipients starting with PREFIX
  --defer-rcpt PREFIX   450 4.2.0 (greylisting) for them
  --defer-times N       ... only the first N times, then accept
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
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", nargs=2)
    p.add_argument("--tls-broken", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--auth-plaintext", action="store_true")
    p.add_argument("--reject-rcpt")
    p.add_argument("--defer-rcpt")
    p.add_argument("--defer-times", type=int)
    p.add_argument("--data-reply")
    p.add_argument("--stall-data", action="store_true")
    p.add_argument("--drop-at-mail", action="store_true")
    p.add_argument("--size", type=int, default=33554432)
    a = p.parse_args()
    counter = [0]
    connections = [0]
    deferred = [0]
    # Controller.start() connects once to see the server up: not counted.
    ready = [False]
    events = open(os.path.join(a.dir, "events"), "a", buffering=1)

    def event(text):
        events.write(text + "\n")
        events.flush()

    class Sink(SMTP):
        """Numbers connections, and can botch STARTTLS on request."""

        def connection_made(self, transport):
            # Called again for the TLS layer after STARTTLS: count once.
            if self._original_transport is None and not ready[0]:
                self.conn_no = 0
            elif self._original_transport is None:
                connections[0] += 1
                self.conn_no = connections[0]
                event("connect %d" % self.conn_no)
            super().connection_made(transport)

        async def smtp_STARTTLS(self, arg):
            event("starttls %d" % self.conn_no)
            if a.tls_broken:
                await self.push("220 2.0.0 Ready to start TLS")
                # After the client's ClientHello, not with the 220 (that
                # would be a response injection, refused before TLS).
                await asyncio.sleep(0.3)
                self.transport.write(b"this is not a TLS record\r\n" * 8)
                self.transport.close()
                return
            return await super().smtp_STARTTLS(arg)

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
                reply = "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
            elif (
                a.defer_rcpt
                and address.startswith(a.defer_rcpt)
                and (a.defer_times is None or deferred[0] < a.defer_times)
            ):
                deferred[0] += 1
                reply = "450 4.2.0 <%s>: Recipient address rejected: Greylisted" % address
            else:
                envelope.rcpt_tos.append(address)
                reply = "250 2.1.5 Ok"
            event("rcpt %d %s %s" % (server.conn_no, address, reply[:3]))
            return reply

        async def handle_DATA(self, server, session, envelope):
            if a.stall_data:
                await asyncio.sleep(3600)
            if a.data_reply:
                return a.data_reply
            counter[0] += 1
            head = "FROM %s\nRCPTS %s\nOPTIONS %s\nTLS %s\nAUTH %s\nCONN %d\n\n" % (
                envelope.mail_from,
                " ".join(envelope.rcpt_tos),
                " ".join(envelope.mail_options),
                "yes" if session.ssl is not None else "no",
                "yes" if session.authenticated else "no",
                server.conn_no,
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
            event("auth %d %s" % (server.conn_no, "ok" if ok else "fail"))
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_require_tls"] = not a.auth_plaintext

    class Control(Controller):
        def factory(self):
            return Sink(self.handler, **self.SMTP_kwargs)

    c = Control(Handler(), hostname=a.host, port=a.port, **kwargs)
    c.start()
    ready[0] = True
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()


if __name__ == "__main__":
    sys.exit(main())
