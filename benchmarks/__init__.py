"""Benchmark scripts: the layer suite (``bench_layers``) and the service benchmark."""
