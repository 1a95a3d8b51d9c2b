"""`make bench`: the rotator's cost beside the calls it must make. See `python -m tools.bench -h`.

Kept free of imports: `python -m tools.bench.probe` loads this package before its timed import.
"""
