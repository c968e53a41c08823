"""A real SMTP server for the e-mail tests (aiosmtpd).

Stores every accepted message as a Maildir file, can refuse chosen recipients (550), can speak
STARTTLS or implicit TLS, and can require a login. Prints `READY <port>` once it listens.

    python3 smtp_server.py --maildir DIR [--refuse a@x,b@y] [--tls starttls|smtps --cert C --key K]
                           [--login user:password]
"""

import argparse
import logging
import socket
import ssl
import sys
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler(Mailbox):
    def __init__(self, maildir, refuse):
        super().__init__(maildir)
        self.refuse = {a.lower() for a in refuse}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    # Tests log in without TLS on 127.0.0.1 on purpose; keep aiosmtpd's warnings about it quiet.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--maildir", required=True)
    p.add_argument("--refuse", default="")
    p.add_argument("--tls", choices=["none", "starttls", "smtps"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--login", default="")
    a = p.parse_args()

    handler = Handler(a.maildir, [r for r in a.refuse.split(",") if r])
    kwargs = {}
    context = None
    if a.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
    if a.tls == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif a.tls == "smtps":
        kwargs.update(ssl_context=context)
    if a.login:
        user, password = a.login.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok, handled=False)

        # Plain-text logins are allowed without TLS here: tests on 127.0.0.1.
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=a.tls == "starttls")

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="localhost", **kwargs)
    controller.start()
    print("READY %d" % port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
