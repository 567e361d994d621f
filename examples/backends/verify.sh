#!/bin/sh
# Verify a Meridian token with curl; prints the verifier's JSON answer.
# Usage: MERIDIAN_URL=https://verifier.internal MERIDIAN_VERIFY_SECRET=... \
#        sh verify.sh TOKEN REMOTE_IP
set -eu
token=$1 remote_ip=$2
# Tokens (and the drop-in's error markers) are base64url, dots, colons and
# dashes; refuse anything else rather than splice it into JSON.
case "$token$remote_ip" in *[!A-Za-z0-9._:-]*) echo "not a token or IP" >&2; exit 2 ;; esac
# The secret goes in through stdin, never on a command line others can read.
printf 'Authorization: Bearer %s\n' "$MERIDIAN_VERIFY_SECRET" |
  curl --silent --show-error --max-time 5 --header @- \
    --header 'Content-Type: application/json' \
    --data "{\"token\":\"$token\",\"remote_ip\":\"$remote_ip\",\"expected_action\":\"login\"}" \
    "${MERIDIAN_URL%/}/v1/verify"
echo
