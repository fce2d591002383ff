#!/usr/bin/env python3
"""A CloudEvents sink: parses every request with the official CloudEvents
Python SDK (an independent reader of what the adapter sends), prints it, and
optionally appends it as one JSON line to a file.

    event_display.py [--port 0] [--port-file F] [--out events.jsonl] [--quiet]
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http_event


def as_json(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class Handler(BaseHTTPRequestHandler):
    out = None
    quiet = False

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = from_http_event(HTTPMessage(headers=headers, body=body))
        except Exception as e:  # any parse failure is the sender's fault
            self.send_response(400)
            self.end_headers()
            self.wfile.write(f"not a CloudEvent: {e}".encode())
            print(f"rejected a request that is not a CloudEvent: {e}", file=sys.stderr, flush=True)
            return
        attributes = {k: as_json(v) for k, v in event.get_attributes().items()}
        data = event.get_data()
        if isinstance(data, (bytes, bytearray)):
            data = json.loads(data)
        record = {"attributes": attributes, "data": data, "body": body.decode("utf-8")}
        if Handler.out:
            with open(Handler.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if not Handler.quiet:
            print("☁️  cloudevents.Event", flush=True)
            for name in sorted(attributes):
                print(f"  {name}: {attributes[name]}", flush=True)
            print("  data:", json.dumps(data, indent=2).replace("\n", "\n  "), flush=True)
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--out")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    Handler.out = args.out
    Handler.quiet = args.quiet
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os

        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"event display listening on http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
