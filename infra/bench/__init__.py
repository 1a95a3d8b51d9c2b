"""`make bench`: the rotator's cost beside the calls it must make. See `python -m infra.bench -h`.

Kept free of imports: `python -m infra.bench.probe` loads this package before its timed import.
"""
