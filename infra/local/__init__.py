"""Local stand-ins (fake Cekura API) for tests, the demo and benchmarks."""
