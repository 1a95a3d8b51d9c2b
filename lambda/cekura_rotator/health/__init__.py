"""The health check: the fleet's keys and rotations checked between rotations (same two ports).

Run on a schedule (template parameter HealthCheckSchedule, hourly by default), or with
`{"secret_ids": [...]}`. Every secret whose rotation function is ROTATION_FUNCTION_ARN is found
with ListSecrets and checked, in ARN order, starting where the last run that ran out of time
stopped (HEALTH_CURSOR_PARAMETER):

1. the AWSCURRENT key, validated at Cekura as testSecret does (401, or 403: rejected);
2. stuck: AWSPENDING on a version that is not AWSCURRENT, older than STUCK_ROTATION_HOURS;
3. overdue: the next rotation AWS reports more than a day past (else the last rotation older
   than the schedule's interval plus a day);
4. debts: owed revocations settled; a `CEKURA_MANUAL_` entry cleared once Cekura no longer
   knows its key (401), kept while it accepts it;
5. heal: a rejected key is replaced by a rotation (RotateSecret) when the secret has an admin
   credential and no rotation is in progress (HEAL_DEAD_KEYS).

Cekura is suspected before the keys: a run clears and heals only with proof that Cekura answers
normally (a key accepted in this run, or the admin credential the heal would use), and heals
nothing when more than half of at least 4 keys Cekura answered for were rejected.

A healthy secret costs one GetSecretValue and one Cekura call, beyond one ListSecrets page per
100 secrets. It never writes a secret's value, never revokes a key, and never logs a key.

The package, like `revocation`: `handler` is the Lambda entry point (the template's Handler is
`cekura_rotator.health.lambda_handler`, re-exported here); `check` makes the calls; `rules` holds
the pure verdicts and `event` the event's validation; `settings` and `report` are what goes in
and what comes out, which the operator CLI uses as well.
"""

from cekura_rotator.health.check import HealthCheck
from cekura_rotator.health.handler import lambda_handler
from cekura_rotator.health.report import HealthReport, SecretHealth
from cekura_rotator.health.settings import HealthSettings

__all__ = ["HealthCheck", "HealthReport", "HealthSettings", "SecretHealth", "lambda_handler"]
