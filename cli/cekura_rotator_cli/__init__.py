"""`cekura-rotator`: the operator CLI for Cekura key rotation in AWS Secrets Manager.

Installed with `pip install .` (or `pipx install .`) from the repository root. It imports the
rotator's own package, `cekura_rotator` (the secret format, the Cekura client, the Secrets Manager
port, the owed-revocation record), and never runs the Lambda handler.

One module per command (`status`, `rotate`, `check`, `bootstrap`, `doctor`, `health`,
`revocations`), each declaring its arguments and its run function; `app` registers them and turns
every outcome into an exit code from the one table in `errors`.
"""
