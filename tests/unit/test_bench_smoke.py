"""`make bench` still works: the minimal rotator rotates, calls are counted, the scale run runs.

Not a timed test: benchmarks are a command (`python -m infra.bench`), and timings on a shared CI
machine mean nothing. This only proves the machinery on a tiny N.
"""

from __future__ import annotations

import os

from infra.bench import rotations, scale
from infra.bench.stand import open_stand


def test_minimal_rotator_call_counting_and_scale_run_on_tiny_n() -> None:
    with open(os.devnull, "w") as devnull, open_stand(devnull) as stand:
        calls = rotations.count_calls(stand, rotations=2)
        timed = rotations.measure_time(stand, rotations=2, firsts=1)
        run = scale.run(stand, 2, rate=50.0)

    minimal = calls["minimal"]["steady"]
    # The minimal rotator makes exactly the calls its docstring promises, no more.
    assert {step: (minimal[step]["aws"], minimal[step]["cekura"]) for step in minimal} == {
        "createSecret": (4, 1),
        "setSecret": (1, 0),
        "testSecret": (2, 1),
        "finishSecret": (3, 0),
    }
    assert minimal["createSecret"]["cekura_ops"] == {"POST create 201": 1}
    assert minimal["testSecret"]["cekura_ops"] == {"GET validate 200": 1}
    # The hooks saw the real handler too, and only it: the bench's own calls are not counted.
    handler = calls["handler"]["first"]
    assert handler["createSecret"]["aws_ops"]["PutSecretValue"] == 1
    assert "RotateSecret" not in str(calls)
    for step in rotations.STEPS:
        for key in ("aws", "cekura"):
            assert calls["handler"]["steady"][step][key] >= minimal[step][key]
    assert timed["handler"]["later"]["n"] == timed["minimal"]["later"]["n"] == 2
    assert (run["completed"], run["failed"]) == (2, 0)
    assert run["aws_calls"] >= 2 * 10
