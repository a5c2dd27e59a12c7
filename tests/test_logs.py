"""Log lines from several processes sharing one pipe stay whole, and secrets are scrubbed."""

from __future__ import annotations

import subprocess
import sys

import orjson

from concur_postback.logs import redact

WRITER = """
import sys
from concur_postback import logs
logs.configure("INFO")
log = logs.get_logger("t")
for n in range(3000):
    log.info("line", writer=sys.argv[1], n=n, padding="x" * 150)
"""
# Four writers on one inherited stdout pipe, as under `run` or a container runtime.
PARENT = """
import subprocess, sys
children = [subprocess.Popen([sys.executable, "-c", sys.argv[1], str(w)]) for w in range(4)]
sys.exit(max(child.wait() for child in children))
"""


def test_lines_of_processes_sharing_stdout_never_interleave() -> None:
    shared = subprocess.run([sys.executable, "-c", PARENT, WRITER], capture_output=True, check=True).stdout
    entries = [orjson.loads(line) for line in shared.splitlines()]
    assert len(entries) == 4 * 3000
    for w in range(4):
        assert [e["n"] for e in entries if e["writer"] == str(w)] == list(range(3000))


def test_redact_hides_token_parameters_and_headers() -> None:
    text = "GET /postback?type=FOP&oauth_token_key=SECRET123&x=1 Authorization: OAuth SECRET456"
    assert "SECRET" not in redact(text)
    assert "oauth_token_key=****" in redact(text)
