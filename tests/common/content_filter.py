#!/usr/bin/env python3
"""An after-queue content filter in the amavis pattern, for postern's tests
and scripts/bench: an SMTP server (aiosmtpd) on 127.0.0.1 that takes a
message, "scans" it, and hands it back to the MTA's reinjection listener
over SMTP before it answers the end of data — so a message is never in
both places and never in neither.

- offers XFORWARD and passes what it was given on to the reinjection
  listener when that offers it too (as amavis does);
- adds `X-Virus-Scanned: <--tag>` at the top of the headers;
- answers 554 5.7.0 for a message that contains --marker (the EICAR-like
  test string), without reinjecting it;
- if the reinjection fails, answers with that reply (4xx stays 4xx).

Misbehaviour, by option: --garbage (answer the end of data with a line
that is not SMTP), --close-in-data (close the connection after DATA's
354), --tempfail (451 for every message). Each message handed back is
also recorded as DIR/N.msg with the XFORWARD attributes it came with
and its envelope (lines "XFORWARD k=v ...", "FROM <sender>", "RCPTS <a>
<b> ...", a blank line, then the message as handed back).

Prints "READY" on stdout once it accepts connections; runs until killed.
"""

import argparse
import asyncio
import os
import smtplib
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, syntax

ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")


class FilterSMTP(SMTP):
    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg):
        if not arg:
            await self.push("501 5.5.4 Syntax: XFORWARD attribute=value ...")
            return
        given = getattr(self.session, "xforward", {})
        for pair in arg.split():
            k, _, v = pair.partition("=")
            if k.upper() not in ATTRS:
                await self.push("501 5.5.4 Bad XFORWARD attribute name: %s" % k)
                return
            given[k.upper()] = v
        self.session.xforward = given
        await self.push("250 2.0.0 Ok")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--reinject", required=True, help="HOST:PORT of the reinjection listener")
    p.add_argument("--dir", help="record what is handed back here")
    p.add_argument("--tag", default="postern-test-filter")
    p.add_argument("--marker", default="EICAR-STANDARD-ANTIVIRUS-TEST-FILE")
    p.add_argument("--garbage", action="store_true")
    p.add_argument("--close-in-data", action="store_true")
    p.add_argument("--tempfail", action="store_true")
    a = p.parse_args()
    host, _, port = a.reinject.rpartition(":")
    counter = [0]

    def reinject(envelope, xforward):
        """Blocking: one SMTP session to the reinjection listener."""
        content = envelope.original_content
        if isinstance(content, str):
            content = content.encode()
        body = ("X-Virus-Scanned: %s\r\n" % a.tag).encode() + content
        try:
            with smtplib.SMTP(host, int(port), timeout=60) as s:
                s.ehlo("filter.localhost")
                offered = s.esmtp_features.get("xforward", "").upper().split()
                attrs = [
                    "%s=%s" % (k, v) for k, v in xforward.items() if k in offered
                ]
                if attrs:
                    code, msg = s.docmd("XFORWARD", " ".join(attrs))
                    if code != 250:
                        return "451 4.3.0 reinjection refused XFORWARD: %d %s" % (code, msg.decode())
                refused = s.sendmail(envelope.mail_from, envelope.rcpt_tos, body)
                if refused:
                    code, msg = next(iter(refused.values()))
                    return "%d %s" % (code, msg.decode())
        except smtplib.SMTPResponseException as e:
            return "%d %s" % (e.smtp_code, e.smtp_error.decode(errors="replace"))
        except (smtplib.SMTPException, OSError) as e:
            return "451 4.3.0 reinjection failed: %s" % e
        if a.dir:
            counter[0] += 1
            path = os.path.join(a.dir, "%d.msg" % counter[0])
            with open(path + ".tmp", "wb") as f:
                head = " ".join("%s=%s" % kv for kv in sorted(xforward.items()))
                rcpts = " ".join("<%s>" % r for r in envelope.rcpt_tos)
                f.write(
                    ("XFORWARD %s\nFROM <%s>\nRCPTS %s\n\n" % (head, envelope.mail_from, rcpts)).encode()
                )
                f.write(body)
            os.rename(path + ".tmp", path)
        return None

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            if a.garbage:
                server._writer.write(b"this is not smtp\r\n")
                return None
            if a.tempfail:
                return "451 4.3.0 filter busy"
            content = envelope.original_content or b""
            if a.marker.encode() in content:
                return "554 5.7.0 virus found: %s" % a.marker
            xforward = dict(getattr(session, "xforward", {}))
            problem = await asyncio.get_running_loop().run_in_executor(
                None, reinject, envelope, xforward
            )
            if problem:
                return problem
            return "250 2.0.0 Ok: passed, handed back"

    class Ctl(Controller):
        def factory(self):
            return FilterSMTP(
                self.handler,
                hostname="filter.localhost",
                decode_data=False,
                enable_SMTPUTF8=True,
            )

    handler = Handler()
    ctl = Ctl(handler, hostname="127.0.0.1", port=a.port)

    if a.close_in_data:
        async def close_in_data(self, arg):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            self.transport.close()

        FilterSMTP.smtp_DATA = close_in_data

    # EHLO: offer XFORWARD.
    orig_ehlo = FilterSMTP.smtp_EHLO

    async def ehlo(self, hostname):
        self._xforward_push = True
        return await orig_ehlo(self, hostname)

    orig_push = FilterSMTP.push

    async def push(self, status):
        if getattr(self, "_xforward_push", False) and status.startswith("250 "):
            self._xforward_push = False
            await orig_push(self, "250-XFORWARD " + " ".join(ATTRS))
        return await orig_push(self, status)

    FilterSMTP.smtp_EHLO = ehlo
    FilterSMTP.push = push

    ctl.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
