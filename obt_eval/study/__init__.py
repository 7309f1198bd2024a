"""Listening studies as a library: blinded A/B design, stimulus preparation, statistics, CSV export.

No database here (see db/); the CLI and the app glue the two together.
"""
