"""The Bytewax dataflow: validation, windows, anomalies, trends, activity."""
