"""Verify a Meridian token with PyJWT against a JWKS URL.

Usage: pyjwt_verify.py JWKS_URL TOKEN
Exits 0 and prints "verified" with the zone when the signature checks out.
"""
import json
import sys
import urllib.request

import jwt


def main() -> int:
    jwks_url, token = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(jwks_url, timeout=10) as response:
        jwks = json.load(response)
    kid = jwt.get_unverified_header(token).get("kid")
    keys = [k for k in jwks["keys"] if k.get("kid") == kid]
    if not keys:
        print(f"no key {kid!r} in the JWKS", file=sys.stderr)
        return 2
    key = jwt.PyJWK(keys[0])
    try:
        claims = jwt.decode(token, key, algorithms=["EdDSA"])
    except jwt.PyJWTError as error:
        print(f"rejected: {error}", file=sys.stderr)
        return 1
    print(f"verified kid={kid} zone={claims['tz']['zone']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
