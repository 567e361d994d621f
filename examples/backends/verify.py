"""Verify a Meridian token from a Python backend (standard library only).

Usage: MERIDIAN_URL=https://verifier.internal MERIDIAN_VERIFY_SECRET=... \
       python3 verify.py TOKEN REMOTE_IP [ACCEPT_LANGUAGE]
"""

import json
import os
import sys
import urllib.error
import urllib.request


def verify(token, remote_ip, accept_language=None, action="login"):
    """Returns the verifier's answer: success, verdict, score, reasons, error_codes."""
    body = {"token": token, "remote_ip": remote_ip, "expected_action": action}
    if accept_language:
        body["accept_language"] = accept_language
    request = urllib.request.Request(
        os.environ["MERIDIAN_URL"].rstrip("/") + "/v1/verify",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": "Bearer " + os.environ["MERIDIAN_VERIFY_SECRET"],
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        # 4xx/5xx answers carry JSON with stable error_codes too.
        return json.load(error)


if __name__ == "__main__":
    answer = verify(*sys.argv[1:4])
    if answer["success"]:
        codes = [reason["code"] for reason in answer["reasons"]]
        print(answer["verdict"], "score=%d" % answer["score"], "reasons=" + ",".join(codes))
    else:
        print("rejected:", ",".join(answer["error_codes"]))
