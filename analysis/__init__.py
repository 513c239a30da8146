"""Metrics, tables, figures and the report, from predictions.h5 and splits.h5 only."""
