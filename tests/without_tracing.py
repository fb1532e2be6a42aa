"""`relight-serve` as on a machine without the `tracing` extra: `python -m tests.without_tracing`.

The extra's packages (the OpenTelemetry SDK and its exporters) are hidden: a None in sys.modules makes their
import fail as if they were not installed (the import system's own rule), while the API that FastAPI itself
needs stays. Tests run the service this way beside one that has them, in the same environment.
"""

import sys

for hidden in ("opentelemetry.sdk", "opentelemetry.exporter"):
    sys.modules[hidden] = None

if __name__ == "__main__":
    from service.serve import main

    main()
