"""`relight-serve` as on a machine without the `tracing` extra: `python -m tests.without_tracing`.

The extra's packages (the OpenTelemetry SDK and its exporters) are hidden from the import system: importing
them fails as if they were not installed, while the API FastAPI itself needs stays. Tests and
bench/tracing.py run the service this way next to one that has them, in the same environment.
"""

import sys
from importlib.abc import MetaPathFinder

HIDDEN = ("opentelemetry.sdk", "opentelemetry.exporter")


class HideTheTracingExtra(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == hidden or name.startswith(hidden + ".") for hidden in HIDDEN):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by tests.without_tracing)", name=name)
        return None


sys.meta_path.insert(0, HideTheTracingExtra())

if __name__ == "__main__":
    from service.serve import main

    main()
