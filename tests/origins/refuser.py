"""A stdio origin whose handshake always fails: every request is answered with a JSON-RPC error.
Each start appends a line to the file its argument names. Hand-written: an SDK server cannot be
made to refuse `initialize`. Run: python -m tests.origins.refuser STARTS_FILE
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    with open(sys.argv[1], "a") as starts:
        starts.write("started\n")
    for line in sys.stdin:
        message = json.loads(line)
        if "id" in message:
            error = {"code": -32603, "message": "not today"}
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
