"""`make audit`: pip-audit's verdict is stated plainly, an unreachable service is said, never waited on.

The vulnerability service here is a local OSV-compatible endpoint (pip-audit's
``--osv-url``), so the whole path (probe, pip-audit run, report) runs without network.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version

import pytest

from infra.audit import main, probe, summarize

VULNERABLE = "structlog"  # an installed package the fake service reports
VULN = {
    "id": "PYSEC-0000-TEST",
    "aliases": ["CVE-0000-0001"],
    "summary": "test vulnerability",
    "affected": [
        {
            "package": {"name": VULNERABLE, "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}],
        }
    ],
}


class FakeOsv(BaseHTTPRequestHandler):
    """Answers OSV /v1/query: one vulnerability for VULNERABLE, none for anything else; GET: 404."""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"vulns": [VULN]} if query["package"]["name"] == VULNERABLE else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOsv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/query"


def test_a_vulnerable_package_fails_the_audit_naming_it_and_its_fix(osv_url, capsys):
    assert main(["--service", "osv", "--osv-url", osv_url]) == 1
    out = capsys.readouterr().out
    assert f"VULNERABLE: {VULNERABLE} {version(VULNERABLE)}: PYSEC-0000-TEST (fixed in: 999.0)" in out
    assert "packages audited, 0 could not be looked up" in out


def test_an_accepted_vulnerability_can_be_ignored_by_id_or_alias(osv_url, capsys):
    assert main(["--service", "osv", "--osv-url", osv_url, "--ignore-vuln", "CVE-0000-0001"]) == 0
    assert "no known vulnerabilities" in capsys.readouterr().out


def test_an_unreachable_service_is_reported_not_waited_on(capsys):
    started = time.monotonic()
    assert main(["--service", "osv", "--osv-url", closed_port_url()]) == 0
    assert main(["--service", "osv", "--osv-url", closed_port_url(), "--require-service"]) == 1
    assert time.monotonic() - started < 30
    out = capsys.readouterr().out
    assert out.count("NOT AUDITED - no vulnerability service answered") == 2
    assert "were NOT checked" in out


def test_probe_names_the_failure(osv_url):
    not_found = osv_url.replace("/v1/query", "/pypi/{name}/{version}/json")  # GET: 404 there
    assert "HTTP 404" in (probe("pypi", pypi_url=not_found) or "")
    assert "unreachable" in (probe("osv", osv_url=closed_port_url(), timeout_s=2) or "")
    assert probe("osv", osv_url=osv_url) is None


def test_summarize_counts_audited_skipped_and_vulnerable_packages():
    report = {
        "dependencies": [
            {"name": "a", "version": "1.0", "vulns": []},
            {
                "name": "b",
                "version": "2.0",
                "vulns": [{"id": "X-1", "aliases": ["CVE-1"], "fix_versions": ["2.1"]}],
            },
            {"name": "c", "skip_reason": "Dependency not found on PyPI"},
            {"name": "realtime-dashboard", "skip_reason": "editable"},
        ]
    }
    verdict = summarize(report, ignored=set())
    assert (verdict.audited, verdict.vulnerable) == (2, [("b", "2.0", "X-1", ["2.1"])])
    assert verdict.skipped == [("c", "Dependency not found on PyPI")]
    assert summarize(report, ignored={"CVE-1"}).vulnerable == []
