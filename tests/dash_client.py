"""Drive the dashboard's server tick over HTTP exactly as the browser's Dash renderer does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from dash import Dash

from dashapp import ids


@dataclass
class TickResult:
    """One answered tick: output values by ``"id.prop"``, and the response size."""

    status: int
    values: dict[str, Any]
    body_bytes: int

    def get(self, component: str, prop: str) -> Any:
        """An output value; KeyError when the server sent no update for it."""
        return self.values[f"{component}.{prop}"]

    def has(self, component: str, prop: str) -> bool:
        """Did the server update this output?"""
        return f"{component}.{prop}" in self.values


def tick_callback_key(dash_app: Dash) -> str:
    """The callback-map key of the server tick (the one triggered by the tick store)."""
    for key, spec in dash_app.callback_map.items():
        if any(i["id"] == ids.TICK for i in spec["inputs"]) and "callback" in spec:
            return str(key)
    raise LookupError("no tick callback registered")


def tick_body(dash_app: Dash, seq: int, device: str | None, cursor: Any, trigger: str = "tick.data") -> bytes:
    """The JSON body the renderer posts to /_dash-update-component for one tick."""
    key = tick_callback_key(dash_app)
    outputs = [
        dict(zip(("id", "property"), o.rsplit(".", 1), strict=True)) for o in key.strip(".").split("...")
    ]
    return orjson.dumps(
        {
            "output": key,
            "outputs": outputs,
            "inputs": [
                {"id": ids.TICK, "property": "data", "value": {"seq": seq, "at": 0}},
                {"id": ids.DEVICE, "property": "value", "value": device},
            ],
            "state": [{"id": ids.CURSOR, "property": "data", "value": cursor}],
            "changedPropIds": [trigger],
        }
    )


def post_tick(
    client: httpx.Client | Any,
    dash_app: Dash,
    seq: int,
    device: str | None,
    cursor: Any,
    trigger: str = "tick.data",
) -> TickResult:
    """Post one tick and decode the multi-output response."""
    resp = client.post(
        "/_dash-update-component",
        content=tick_body(dash_app, seq, device, cursor, trigger),
        headers={"content-type": "application/json"},
    )
    values: dict[str, Any] = {}
    if resp.status_code == 200:
        for component, props in resp.json()["response"].items():
            for prop, value in props.items():
                values[f"{component}.{prop}"] = value
    return TickResult(resp.status_code, values, len(resp.content))


def initial_cursor(client: httpx.Client | Any) -> Any:
    """The cursor the page layout starts with (from /_dash-layout)."""
    layout = client.get("/_dash-layout").json()
    found = _find(layout, ids.CURSOR)
    assert found is not None, "no cursor store in the layout"
    return found["props"]["data"]


def find_component(layout: Any, component_id: str) -> Any:
    """A component of a serialised layout by id (None when absent)."""
    return _find(layout, component_id)


def _find(node: Any, component_id: str) -> Any:
    if isinstance(node, dict):
        if node.get("props", {}).get("id") == component_id:
            return node
        for value in node.values():
            found = _find(value, component_id)
            if found is not None:
                return found
    elif isinstance(node, list):
        for item in node:
            found = _find(item, component_id)
            if found is not None:
                return found
    return None
