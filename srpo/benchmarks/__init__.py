"""Benchmarks that print numbers: each runs real training or sampling and reports a dict."""
