#!/usr/bin/env bash
# Prints the path of the Python that matches the Lambda runtime (3.13), falling back to the newest
# 3.12/3.11 on the machine. `sam build` insists on the runtime's exact minor version on PATH.
set -euo pipefail
want="${1:-3.13}"
candidates=("python${want}")
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E "^${want//./\\.}(\.|$)" | sort -rV); do
    candidates+=("$(pyenv root)/versions/${v}/bin/python${want}")
  done
fi
candidates+=("$HOME/.pyenv/versions/${want}"*/bin/"python${want}" "/usr/local/bin/python${want}" "/usr/bin/python${want}")
if [ "${2:-}" != "--exact" ]; then
  candidates+=(python3.13 python3.12 python3.11 python3)
fi
for c in "${candidates[@]}"; do
  if p=$(command -v "$c" 2>/dev/null) && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "$p"
    exit 0
  fi
done
echo "find-python: no Python ${want} (or >= 3.11) found" >&2
exit 1
