"""Dash callbacks, thin: `data` reads (the shared cache), `figures` builds, `stream` diffs, `tick` wires."""
