#!/bin/sh
# Check that the host has what the test guest needs, printing the apt-get command if not.
# Usage: scripts/guest/check-host.sh          exit 0 when all is there, 125 otherwise
#        scripts/guest/check-host.sh --list   print the Debian package names (for .ci/run)
set -eu
. "$(dirname "$0")/common.sh"
if [ "${1:-}" = --list ]; then
    echo "$guest_host_packages"
    exit 0
fi
guest_check_host_tools
echo "${0##*/}: host has $guest_host_packages"
