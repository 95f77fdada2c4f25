"""`python -m presence_conformance.reference_impl.server [--host] [--port] [--keys] [--leave-grace] [--sync-page]`."""

import sys

from presence_conformance.reference_impl.server.cli import serve_main

if __name__ == "__main__":
    sys.exit(serve_main())
