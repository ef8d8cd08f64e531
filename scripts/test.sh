#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then lint + pytest.
# Needs Debian/Ubuntu with root for the reference registry and clients (apt), or those
# tools already on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker-registry skopeo podman openssl)
# the real S3 store of scripts/rgw.py (Ceph RGW), installed without recommends
CEPH_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common python3-rados uuid-runtime)
# the web page's browser tests: Debian's chromium, driven by Playwright (never downloaded)
BROWSER_PACKAGES=(chromium)
missing=()
for tool in docker-registry skopeo podman openssl ceph-mon ceph-osd radosgw radosgw-admin \
    monmaptool uuidgen chromium; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
        apt-get install -y -qq --no-install-recommends "${CEPH_PACKAGES[@]}" >/dev/null
        apt-get install -y -qq --no-install-recommends "${BROWSER_PACKAGES[@]}" >/dev/null
    else
        echo "missing: ${missing[*]}; install them: sudo apt-get install ${APT_PACKAGES[*]} ${CEPH_PACKAGES[*]} ${BROWSER_PACKAGES[*]}" >&2
        exit 3
    fi
fi

python3 -m pip install -q -e '.[test]'
ruff check regtool tests scripts
mypy
python3 -m pytest -q "$@"
