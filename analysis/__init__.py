"""Metrics, tables, figures and the report, from predictions.h5 and splits.h5 (and the feature
store's fingerprint) only; methods are shown as the registry says (order, colour, family), so
no method is named here."""
