"""compose.yaml is valid Compose and agrees with the code: commands, settings, ports, order.

No Docker engine runs here, so compose.yaml is checked as a file: against the Compose
Specification's JSON schema (vendored by check-jsonschema), and against the code it runs
(infra/stack.py's process table, the settings classes, infra/monitoring/prometheus.yml).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.envdoc import collect
from infra.settings import StackSettings
from infra.stack import PROCESS_BY_NAME, PROCESSES, processes
from tests.pending_merge import AWAITING_MERGE, module_exists

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "compose.yaml"
CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """What compose makes of `value` with no variable set: each ${VAR:-default} becomes default."""
    return _INTERPOLATION.sub(lambda m: m.group("default") or "", value).replace("$$", "$")


def resolve(node: Any) -> Any:
    if isinstance(node, str):
        return interpolate(node)
    if isinstance(node, list):
        return [resolve(v) for v in node]
    if isinstance(node, dict):
        return {k: resolve(v) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict[str, Any]:
    return resolve(raw)


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def settings_from(env: dict[str, str]) -> StackSettings:
    """The settings a container with this environment builds (no .env, no host variables)."""
    fields = {
        name: env[f"PIPELINE_{name.upper()}"]
        for name in StackSettings.model_fields
        if f"PIPELINE_{name.upper()}" in env
    }
    return StackSettings(_env_file=None, **fields)  # type: ignore[call-arg]


def python_module(argv: list[str]) -> str | None:
    """The module `python -m X ...` runs; for `python -m bytewax.run IMPORT_STR`, the flow's module."""
    if argv[:2] != ["python", "-m"]:
        return None
    if argv[2] == "bytewax.run":
        return argv[3].partition(":")[0]
    return argv[2]


def app_services(compose) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("build")}


# --- the Compose Specification -------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification():
    result = subprocess.run([*CHECK_JSONSCHEMA, str(COMPOSE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_an_invalid_compose_file(tmp_path):
    # Proves the check above can fail: a misspelt key and an unknown depends_on condition.
    broken = COMPOSE.read_text().replace("condition: service_healthy", "condition: service_ready", 1)
    broken = broken.replace("    restart: unless-stopped\n", "    restarts: unless-stopped\n", 1)
    path = tmp_path / "compose.yaml"
    path.write_text(broken)
    result = subprocess.run([*CHECK_JSONSCHEMA, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "restarts" in result.stdout
    assert "depends_on" in result.stdout


# --- commands ------------------------------------------------------------------------


def _command_cases() -> list[Any]:
    compose = resolve(yaml.safe_load(COMPOSE.read_text()))
    cases = []
    for name, svc in app_services(compose).items():
        module = python_module(command_of(svc))
        assert module, f"{name}: expected a `python -m MODULE` command"
        spec_name = module if not module_exists(module) or not _is_package(module) else f"{module}.__main__"
        marks = []
        if spec_name in AWAITING_MERGE:
            marks.append(
                pytest.mark.xfail(
                    strict=True,
                    reason=f"awaiting {AWAITING_MERGE[spec_name]}; merged? delete it from AWAITING_MERGE",
                )
            )
        cases.append(pytest.param(name, spec_name, marks=marks, id=name))
    return cases


def _is_package(module: str) -> bool:
    import importlib.util

    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


@pytest.mark.parametrize(("service", "module"), _command_cases())
def test_every_compose_command_runs_a_module_that_exists_and_imports(service, module):
    # `python -m pkg` runs pkg.__main__: only its presence is checked, importing it would run it.
    assert module_exists(module), f"compose service {service!r} runs {module!r}, which does not exist"
    target = module.removesuffix(".__main__")
    code = f"import importlib; importlib.import_module({target!r})"
    if service == "flow":
        # bytewax.run takes the module's `flow`; building it must need no broker.
        code += (
            "; from bytewax.dataflow import Dataflow"
            f"; assert isinstance(importlib.import_module({target!r}).flow, Dataflow)"
        )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_awaited_module_is_one_compose_runs(compose):
    # The awaiting list must not hide anything else: each entry is a module compose.yaml runs.
    run = set()
    for svc in app_services(compose).values():
        module = python_module(command_of(svc))
        run |= {module, f"{module}.__main__"}
    assert set(AWAITING_MERGE) <= run


def test_long_running_services_run_the_commands_of_the_local_stack(compose):
    app = app_services(compose)
    for proc in processes():
        if proc.monitoring:
            continue
        svc = app[proc.name]
        expected = proc.argv(settings_from(env_of(svc)))
        assert command_of(svc) == expected, f"{proc.name}: compose and infra/stack.py disagree"


def test_interpolation_defaults_are_the_settings_defaults(raw):
    defaults = {f"PIPELINE_{name.upper()}": info.default for name, info in StackSettings.model_fields.items()}
    found = 0
    for match in _INTERPOLATION.finditer(COMPOSE.read_text()):
        name, default = match.group("name"), match.group("default")
        if name.startswith("PIPELINE_") and name in defaults:
            found += 1
            assert default == str(defaults[name]), (
                f"${{{name}:-{default}}} but the setting defaults to {defaults[name]}"
            )
    assert found >= 4


# --- settings and ports --------------------------------------------------------------


def test_every_pipeline_variable_compose_sets_is_a_real_setting(compose):
    real = {var for _, var, _, _ in collect()}
    for name, svc in compose["services"].items():
        unknown = {var for var in env_of(svc) if var.startswith("PIPELINE_")} - real
        assert not unknown, f"{name} sets {sorted(unknown)}, which no settings class defines"


def test_every_app_service_builds_valid_settings_from_its_environment(compose):
    for svc in app_services(compose).values():
        settings_from(env_of(svc))  # raises naming the field if a value is invalid


def test_services_use_the_ports_of_the_settings_defaults(compose):
    # The same ports as `make up`, so infra/monitoring/prometheus.yml serves both.
    defaults = StackSettings(_env_file=None)  # type: ignore[call-arg]
    app = app_services(compose)
    for proc in processes():
        if proc.monitoring:
            continue
        port = proc.port(defaults)
        svc = app[proc.name]
        assert proc.port(settings_from(env_of(svc))) == port, f"{proc.name} listens on another port"
        health = " ".join(svc["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}{proc.ready_path}" in health, (
            f"{proc.name}: healthcheck asks another URL"
        )
        for mapping in svc.get("ports", []):
            assert str(mapping).rsplit(":", 1)[1] == str(port), f"{proc.name} publishes another port"


def test_the_dashboard_listens_on_every_interface_inside_its_container(compose):
    assert env_of(compose["services"]["dashboard"])["PIPELINE_DASH_HOST"] == "0.0.0.0"  # noqa: S104


def test_prometheus_scrapes_every_metrics_port_of_the_stack():
    config = yaml.safe_load((ROOT / "infra/monitoring/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    defaults = StackSettings(_env_file=None)  # type: ignore[call-arg]
    expected = {f"{p.name}:{p.port(defaults)}" for p in PROCESSES if p.scraped}
    assert targets == expected


# --- start order -----------------------------------------------------------------------

# Which compose dependency makes each need of infra/stack.py true.
NEED_TO_DEPENDENCY = {
    "kafka": ("topics", "service_completed_successfully"),
    "topics": ("topics", "service_completed_successfully"),
    "redis": ("redis", "service_healthy"),
    "recovery": ("recovery-init", "service_completed_successfully"),
}


def test_each_service_starts_after_what_it_needs(compose):
    for proc in processes():
        if proc.monitoring:
            continue
        depends = compose["services"][proc.name].get("depends_on", {})
        for need in proc.needs:
            service, condition = NEED_TO_DEPENDENCY[need]
            assert depends.get(service, {}).get("condition") == condition, f"{proc.name} needs {need}"


def test_one_shot_services_wait_for_a_healthy_kafka_and_do_not_restart(compose):
    services = compose["services"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("topics", "recovery-init"):
        assert services[name]["restart"] == "no"


def test_every_healthy_condition_points_at_a_service_with_a_healthcheck(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep} to be healthy; it has no healthcheck"
                )
    long_running = [n for n, s in services.items() if s.get("restart") != "no"]
    assert all("healthcheck" in services[n] for n in long_running)


def test_the_dataflow_keeps_its_recovery_partitions_on_a_named_volume(compose):
    flow, init = compose["services"]["flow"], compose["services"]["recovery-init"]
    recovery_dir = env_of(flow)["PIPELINE_RECOVERY_DIR"]
    assert env_of(init)["PIPELINE_RECOVERY_DIR"] == recovery_dir
    assert env_of(init)["PIPELINE_RECOVERY_PARTITIONS"] == env_of(flow)["PIPELINE_RECOVERY_PARTITIONS"]
    for svc in (flow, init):
        volume = next(v for v in svc["volumes"] if v.endswith(f":{recovery_dir}"))
        assert volume.split(":")[0] in compose["volumes"]


# --- images ----------------------------------------------------------------------------


def test_kafka_is_the_official_image_of_the_local_broker_version(compose):
    pom = ET.parse(ROOT / "infra/kafka/pom.xml").getroot()  # noqa: S314 - our own file
    version = pom.find(
        "{http://maven.apache.org/POM/4.0.0}properties/{http://maven.apache.org/POM/4.0.0}kafka.version"
    )
    assert version is not None
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version.text}"
    assert version.text.startswith("4.")
    env = env_of(compose["services"]["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_redis_is_the_official_redis_7_image(compose):
    assert re.fullmatch(r"redis:7(\.\d+)*(-alpine)?", compose["services"]["redis"]["image"])


def test_app_image_is_slim_python_311_as_a_non_root_user_with_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "--mount=type=cache,target=/root/.cache/pip" in dockerfile
    # Every package pyproject.toml installs is copied in (a new package must not be forgotten).
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"include = \[(.*?)\]", pyproject)
    assert include
    for package in re.findall(r'"(\w+)\*"', include.group(1)):
        assert f"COPY {package}/ {package}/" in dockerfile


def test_monitoring_services_run_only_in_the_monitoring_profile(compose):
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    assert all(
        "profiles" not in svc for name, svc in services.items() if name not in {"prometheus", "grafana"}
    )


def test_files_compose_mounts_exist(compose):
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_stack_process_names_are_compose_services(compose):
    assert set(PROCESS_BY_NAME) <= set(compose["services"])
