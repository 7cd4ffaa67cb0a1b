#!/usr/bin/env python3
"""moto's server, with DynamoDB requests served one at a time.

moto serves each request on its own thread, and its DynamoDB backend is not safe for that:
TransactWriteItems snapshots every table it touches, applies its items one by one and, when a
condition fails, puts the snapshots back, erasing whatever other threads wrote meanwhile; a read
can also see half a transaction. Real DynamoDB isolates transactions, and our code (and the tests
that prove "nothing lost") rely on it. Serialising DynamoDB requests restores that isolation; every
other service (SQS long polls among them) keeps its threads.

Usage: moto_server.py -H 127.0.0.1 -p PORT
"""

import argparse
import os
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple


def serialise_dynamodb(app):
    """A WSGI app that holds one lock while it serves a DynamoDB request."""
    lock = threading.Lock()

    def serve(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
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
    run_simple(args.host, args.port, serialise_dynamodb(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
