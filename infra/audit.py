"""Audit the installed packages for known vulnerabilities with pip-audit, honestly and without hanging.

``python -m infra.audit [--require-service] [--ignore-vuln ID ...] [--service auto|pypi|osv] [--osv-url URL]``
(``make audit``, part of ``make lint``).

pip-audit looks each installed release up in a vulnerability service (PyPI's JSON
API by default, or OSV). When that service cannot answer, pip-audit skips the
package and may still end with "No known vulnerabilities found"; offline it may wait
a socket timeout per package. So this wrapper first probes the services (one short
request each) and runs pip-audit against the first that answers, with a bounded
run time, then states plainly what was and was not audited:

* exit 1: known vulnerabilities (each listed with its fix versions), or pip-audit failed;
* exit 0: no known vulnerabilities in the audited packages (those it could not look up
  are listed); or no service was reachable, which is said loudly, unless
  ``--require-service`` makes that exit 1 (for CI with network).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

PYPI_URL = "https://pypi.org/pypi/{name}/{version}/json"
OSV_URL = "https://api.osv.dev/v1/query"
PROBE_TIMEOUT_S = 10.0
AUDIT_TIMEOUT_S = 600.0
OWN_PROJECT = "realtime-dashboard"


@dataclass
class Verdict:
    """What an audit found."""

    vulnerable: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    """(package, version, vulnerability id, fix versions)."""
    audited: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(package, why pip-audit could not audit it)."""


def probe(
    service: str, pypi_url: str = PYPI_URL, osv_url: str = OSV_URL, timeout_s: float = PROBE_TIMEOUT_S
) -> str | None:
    """None if `service` answers a lookup of the installed pip release, else why not."""
    pip_version = version("pip")
    url = pypi_url.format(name="pip", version=pip_version) if service == "pypi" else osv_url
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"not an http(s) URL: {url}")
    body = None
    if service != "pypi":
        body = json.dumps({"package": {"name": "pip", "ecosystem": "PyPI"}, "version": pip_version}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310 - http(s) checked
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) checked
            json.load(response)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} from {request.full_url}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{request.full_url} unreachable ({reason})"
    except ValueError as exc:
        return f"{request.full_url} did not answer JSON ({exc})"
    return None


def summarize(report: dict[str, Any], ignored: set[str]) -> Verdict:
    """Read pip-audit's JSON report (``-f json``)."""
    verdict = Verdict()
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            if dep["name"] != OWN_PROJECT:
                verdict.skipped.append((dep["name"], dep["skip_reason"]))
            continue
        verdict.audited += 1
        for vuln in dep.get("vulns", []):
            ids = {vuln["id"], *vuln.get("aliases", [])}
            if not ids & ignored:
                verdict.vulnerable.append(
                    (dep["name"], dep["version"], vuln["id"], vuln.get("fix_versions", []))
                )
    return verdict


def run_pip_audit(
    service: str, ignored: list[str], osv_url: str = OSV_URL, timeout_s: float = AUDIT_TIMEOUT_S
) -> dict[str, Any]:
    """Run pip-audit on this environment; its JSON report. Raises `RuntimeError` when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        cmd = [
            sys.executable,
            "-m",
            "pip_audit",
            "--vulnerability-service",
            service,
            "--osv-url",
            osv_url,
            "--skip-editable",
            "--progress-spinner",
            "off",
            "--timeout",
            "15",
            "--format",
            "json",
            "--output",
            str(out),
            *(arg for vuln in ignored for arg in ("--ignore-vuln", vuln)),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pip-audit did not finish within {timeout_s:.0f}s") from None
        # Exit 1 with a report means "vulnerabilities found"; without one, pip-audit failed.
        if not out.exists():
            raise RuntimeError(f"pip-audit failed (exit {done.returncode}):\n{done.stderr.strip()}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring for the exit status."""
    parser = argparse.ArgumentParser(prog="python -m infra.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-service", action="store_true", help="fail when no service is reachable")
    parser.add_argument(
        "--ignore-vuln",
        action="append",
        default=[],
        metavar="ID",
        help="accepted risk (give a reason in the Makefile)",
    )
    parser.add_argument(
        "--service", choices=["auto", "pypi", "osv"], default="auto", help="auto: the first that answers"
    )
    parser.add_argument("--osv-url", default=OSV_URL, help="OSV API endpoint (a mirror)")
    args = parser.parse_args(argv)

    reasons = {}
    for service in ("pypi", "osv") if args.service == "auto" else (args.service,):
        reasons[service] = probe(service, osv_url=args.osv_url)
        if reasons[service] is None:
            break
    else:
        print("pip-audit: NOT AUDITED - no vulnerability service answered:")
        for service, reason in reasons.items():
            print(f"  {service}: {reason}")
        print("  The installed packages were NOT checked for known vulnerabilities.")
        return 1 if args.require_service else 0

    try:
        report = run_pip_audit(service, args.ignore_vuln, args.osv_url)
    except RuntimeError as exc:
        print(f"pip-audit: {exc}")
        return 1
    verdict = summarize(report, set(args.ignore_vuln))
    skipped = len(verdict.skipped)
    print(f"pip-audit ({service}): {verdict.audited} packages audited, {skipped} could not be looked up")
    for name, reason in verdict.skipped:
        print(f"  not audited: {name}: {reason}")
    if not verdict.audited:
        print("  NOT AUDITED: the service knew none of the installed releases.")
        return 1 if args.require_service else 0
    for name, ver, vuln_id, fixes in verdict.vulnerable:
        print(f"  VULNERABLE: {name} {ver}: {vuln_id} (fixed in: {', '.join(fixes) or 'no fix yet'})")
    if verdict.vulnerable:
        return 1
    print("  no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
