"""Developer tools that are not part of the Lambda package: `python -m tools.bench`.

Kept free of imports: the benchmark's probe loads this package before its timed import.
"""
