"""`python -m infra.local.fake_cekura`: serve the fake standalone (see the package docstring)."""

from infra.local.fake_cekura.server import main

main()
