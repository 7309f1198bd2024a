"""Encoder comparison reports: one table (Markdown, CSV, HTML) and plots from layer/k search results."""
