#!/usr/bin/env bash
# Make sure Orthanc and its DICOMweb plugin are installed, for the PACS tests (tests/test_pacs.py) and for trying
# scripts/infer_dicom.py --dicomweb locally. Debian/Ubuntu packages: orthanc, orthanc-dicomweb (apt-get, as root).
# Exit 0 when both are there (installed now or before); otherwise exit 1 with the reason on the last line, which the
# tests print as their skip reason. Other systems: install Orthanc with its DICOMweb plugin
# (https://orthanc.uclouvain.be) and point ORTHANC (the executable) and ORTHANC_DICOMWEB_PLUGIN (the .so) at them.
set -uo pipefail
ORTHANC=${ORTHANC:-$(command -v Orthanc || echo /usr/sbin/Orthanc)}
PLUGIN=${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}
if [ -x "$ORTHANC" ] && [ -f "$PLUGIN" ]; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "Orthanc not installed and no apt-get here: install Orthanc and its DICOMweb plugin, then set ORTHANC and ORTHANC_DICOMWEB_PLUGIN"
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo -n"
    if ! $SUDO true 2> /dev/null; then
        echo "Orthanc not installed and apt-get needs root: sudo apt-get install orthanc orthanc-dicomweb"
        exit 1
    fi
else
    SUDO=""
fi
echo "[setup] installing orthanc and orthanc-dicomweb (apt-get; the packages' own service is not needed by the tests)"
log=$(mktemp)
if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        orthanc orthanc-dicomweb; } > "$log" 2>&1; then
    tail -n 5 "$log"
    rm -f "$log"
    echo "apt-get could not install orthanc orthanc-dicomweb (see above)"
    exit 1
fi
rm -f "$log"
if [ -x "$ORTHANC" ] && [ -f "$PLUGIN" ]; then
    exit 0
fi
echo "orthanc installed, but $ORTHANC or $PLUGIN is missing"
exit 1
