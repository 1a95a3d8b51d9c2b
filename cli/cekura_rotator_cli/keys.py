"""Whether Cekura accepts a key: the one question `status`, `check`, `doctor` and `rotate` ask.

One validate call (`GET /app/otel/validate/?project_id=N`): 200 accepted; 401 rejected (Cekura
does not know the key: deleted in the dashboard, or never real); 403 rejected (a live key, of
another project); anything else, or no answer, unknown, which is "Cekura unreachable" (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cekura_rotator.cekura import CekuraClient
from cekura_rotator.errors import CekuraAuthError, CekuraError, CekuraForbiddenError
from cekura_rotator.secret_value import SecretValue
from cekura_rotator_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE

# malformed: the stored value is not in the documented format (Cekura is not asked).
Judgement = Literal["accepted", "rejected", "malformed", "unknown", "not checked"]


@dataclass(frozen=True)
class KeyVerdict:
    """Cekura's answer about one key, in words for a person."""

    state: Judgement
    text: str

    @property
    def exit_code(self) -> int:
        if self.state in ("rejected", "malformed"):
            return EXIT_FAILED
        return EXIT_UNAVAILABLE if self.state == "unknown" else EXIT_OK


def judge_key(cekura: CekuraClient, value: SecretValue, project: int | None) -> KeyVerdict:
    """Ask Cekura about `value`'s key for `project` (the secret's, else the function's)."""
    if project is None:
        return KeyVerdict(
            "not checked",
            "not checked: neither the secret (project_id) nor the function (CEKURA_PROJECT_ID) "
            "names a project",
        )
    try:
        cekura.validate(value.api_key, project_id=project)
    except CekuraAuthError as e:
        return KeyVerdict(
            "rejected",
            f"rejected: Cekura does not know the key ({e.message}); it was deleted in the "
            "dashboard, or never worked",
        )
    except CekuraForbiddenError as e:
        return KeyVerdict(
            "rejected", f"rejected: the key is live but not for project {project} ({e.message})"
        )
    except CekuraError as e:
        return KeyVerdict("unknown", f"unknown: {e.message}")
    return KeyVerdict("accepted", f"accepted for project {project}")
