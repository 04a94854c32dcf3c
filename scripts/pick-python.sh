#!/bin/sh
# The interpreter `make setup` builds .venv with (the Makefile's PY, when not given).
#
# A distribution's python3 is built for speed (Debian's and Ubuntu's: profile-guided, link-time
# optimised, linked statically). pyenv's default build is none of these: on this project's
# 2-core machines the same decision took 10-18% longer in process on it (pyenv 3.11.7: 651-712
# us, Debian 3.11.2: 593-602 us) and 6-8% more server CPU over HTTP. So: the system's
# /usr/bin/python3 when it is a version the project supports (3.11-3.13) and can make a venv
# and build an extension (the headers are there); else python3 on PATH.
for py in /usr/bin/python3 python3; do
  if "$py" - <<'PYEOF' >/dev/null 2>&1; then
import os, sys, sysconfig
import ensurepip, venv  # noqa: F401  (Debian splits these off into python3-venv)
ok = (3, 11) <= sys.version_info[:2] < (3, 14)  # pyproject.toml's requires-python: keep alike
ok = ok and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
sys.exit(0 if ok else 1)
PYEOF
    echo "$py"
    exit 0
  fi
done
echo python3
