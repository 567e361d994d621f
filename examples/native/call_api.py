"""Calls an API route that Meridian guards, as a command-line tool would.

`meridian collect` signs this machine's time zone, locale and clock into a
token bound to a fresh challenge from the service; the request carries it in
the `Meridian-Token` header, and the service's verdict comes back.

    MERIDIAN_URL=https://api.example.com python3 call_api.py

MERIDIAN_BIN names the `meridian` binary (default: the one on PATH);
MERIDIAN_KEY, a private JWK to sign with instead of the embedded key
(development only).
"""

import os
import subprocess
import sys
import urllib.error
import urllib.request

base = os.environ["MERIDIAN_URL"].rstrip("/")
command = [os.environ.get("MERIDIAN_BIN", "meridian"), "collect",
           "--challenge-url", f"{base}/v1/challenge", "--action", "api"]
if os.environ.get("MERIDIAN_KEY"):
    command += ["--key", os.environ["MERIDIAN_KEY"]]
token = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()

request = urllib.request.Request(f"{base}/api/hello", headers={"Meridian-Token": token})
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as refused:
    # A refusal (403) still carries the verdict and its reasons.
    print(refused.code, refused.read().decode())
    sys.exit(0 if refused.code == 403 else 1)
