#!/usr/bin/env python3
"""moto's server, serving one request at a time (except SQS long polls).

moto serves each request on its own thread, and its backends are not safe for that: DynamoDB's
TransactWriteItems snapshots every table it touches, applies its items one by one and, when a
condition fails, puts the snapshots back, erasing whatever other threads wrote meanwhile (a read
can also see half a transaction), and `/moto-api/data.json` walks every backend's dictionaries
while other threads change them (a 500 under load). Real AWS isolates these, and our code (and the
tests that prove "nothing lost") rely on it. Requests are therefore served under one lock; only
SQS ReceiveMessage, which may wait up to 20 s for a message (long polling), runs beside them, as
the queue it waits on must be fed by the others.

Usage: moto_server.py -H 127.0.0.1 -p PORT
"""

import argparse
import os
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple


def serialise(app):
    """A WSGI app that serves each request under one lock, SQS long polls excepted."""
    lock = threading.Lock()

    def serve(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "") == "AmazonSQS.ReceiveMessage":
            return app(environ, start_response)
        with lock:
            body = app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                if hasattr(body, "close"):
                    body.close()

    return serve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialise(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
