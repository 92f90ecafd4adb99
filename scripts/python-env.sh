#!/usr/bin/env bash
# Makes .venv/ with fastdit installed: `python3 -m venv --system-site-packages`, so the
# system's numpy and torch (Debian's python3-numpy, python3-torch) are the venv's, and a
# path file naming python/, the package's source: fastdit is pure Python over the C API and
# finds build/libfastdit.so from there (or $FASTDIT_LIBRARY). Nothing is downloaded and
# nothing is pip-installed, so the venv is made --without-pip (no ensurepip needed).
# FASTDIT_SYSTEM_PYTHON picks the interpreter (default /usr/bin/python3, Debian's).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${FASTDIT_SYSTEM_PYTHON:-/usr/bin/python3}
[[ -x .venv/bin/python ]] || "$python" -m venv --system-site-packages --without-pip .venv
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/python" >"$site/fastdit.pth"
.venv/bin/python -c 'import fastdit, numpy; print("fastdit", fastdit.__file__, "on", fastdit._capi.library_path, "numpy", numpy.__version__)'
