// Verify a Meridian token from a Node.js backend (Node 18+, no packages).
//
// Usage: MERIDIAN_URL=https://verifier.internal MERIDIAN_VERIFY_SECRET=... \
//        node verify.mjs TOKEN REMOTE_IP [ACCEPT_LANGUAGE]

export async function verify(token, remoteIp, acceptLanguage, action = 'login') {
  const body = { token, remote_ip: remoteIp, expected_action: action };
  if (acceptLanguage) body.accept_language = acceptLanguage;
  const response = await fetch(`${process.env.MERIDIAN_URL.replace(/\/$/, '')}/v1/verify`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${process.env.MERIDIAN_VERIFY_SECRET}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  // Every answer, 4xx and 5xx included, is JSON with stable error_codes.
  return response.json();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [token, remoteIp, acceptLanguage] = process.argv.slice(2);
  const answer = await verify(token, remoteIp, acceptLanguage);
  if (answer.success) {
    const codes = answer.reasons.map((reason) => reason.code).join(',');
    console.log(`${answer.verdict} score=${answer.score} reasons=${codes}`);
  } else {
    console.log(`rejected: ${answer.error_codes.join(',')}`);
  }
}
