"""An OTLP/HTTP trace receiver on loopback, for tests and bench/tracing.py: what a collector's otlp receiver
does with POST /v1/traces (decoded with opentelemetry-proto, which the `tracing` extra installs), kept in memory."""

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Collector:
    """An OTLP/HTTP receiver on loopback: decodes what POST /v1/traces brings, as a collector's otlp receiver."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.spans: list = []  # (service.name, opentelemetry.proto.trace.v1.trace_pb2.Span)
        self.posts = 0
        lock = threading.Lock()
        collector = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                export = ExportTraceServiceRequest.FromString(body)
                received = []
                for resource_spans in export.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        received += [(attributes.get("service.name"), span) for span in scope_spans.spans]
                with lock:
                    collector.spans += received
                    collector.posts += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
