// Calls an API route that Meridian guards, as a command-line tool would.
//
// `meridian collect` signs this machine's time zone, locale and clock into a
// token bound to a fresh challenge from the service; the request carries it
// in the `Meridian-Token` header, and the service's verdict comes back.
//
//     MERIDIAN_URL=https://api.example.com node call_api.mjs
//
// MERIDIAN_BIN names the `meridian` binary (default: the one on PATH);
// MERIDIAN_KEY, a private JWK to sign with instead of the embedded key
// (development only).

import { execFileSync } from "node:child_process";

const base = process.env.MERIDIAN_URL.replace(/\/+$/, "");
const args = ["collect", "--challenge-url", `${base}/v1/challenge`, "--action", "api"];
if (process.env.MERIDIAN_KEY) args.push("--key", process.env.MERIDIAN_KEY);
const token = execFileSync(process.env.MERIDIAN_BIN ?? "meridian", args, { encoding: "utf8" }).trim();

const response = await fetch(`${base}/api/hello`, { headers: { "Meridian-Token": token } });
// A refusal (403) still carries the verdict and its reasons.
console.log(response.status, await response.text());
process.exit(response.ok || response.status === 403 ? 0 : 1);
