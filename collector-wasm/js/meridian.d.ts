// Types of Meridian's drop-in collector (`meridian.js`).

/** Options of {@link collect} and {@link attach}. */
export interface CollectOptions {
  /**
   * URL of the verifier's `GET /v1/challenge`. Default: the script tag's
   * `data-challenge-url`, else `/v1/challenge` on the origin the module was
   * loaded from.
   */
  challengeUrl?: string;
  /**
   * What the user is doing, e.g. `"login"`; the backend can require it.
   * Default: the script tag's `data-action`, else `"login"`.
   */
  action?: string;
  /**
   * Take the challenge through the verifier's echo (`GET /v1/echo`, a
   * WebSocket beside the challenge URL), which seals the round trips the
   * verifier measured into it. Default `true`; `false` fetches a plain
   * challenge (no timing in the token; about one round trip and 32 ms
   * faster). Where no WebSocket gets through, the echo runs over plain
   * requests (`POST /v1/echo`, eight round trips); when neither runs, the
   * collector falls back to the plain fetch by itself.
   */
  echo?: boolean;
}

/** Resolves when the WebAssembly module is loaded and started; rejects if it cannot run. */
export declare const ready: Promise<unknown>;

/** The challenge endpoint used when none is given. */
export declare const defaultChallengeUrl: string;

/**
 * Takes a fresh challenge (through the echo unless `echo: false`), collects the browser's time-zone, locale,
 * clock and integrity signals, and resolves to a signed token (compact JWS)
 * for the backend to pass to `POST /v1/verify`. Rejects when the verifier
 * is unreachable or WebAssembly cannot run.
 */
export declare function collect(options?: CollectOptions): Promise<string>;

/**
 * Makes `form` put a token into its `meridian-token` field before it
 * submits (or `meridian-error:<kind>` when collection fails, so the user is
 * never blocked). Forms matching the script's `data-forms` selector
 * (default `form[data-meridian]`) are attached automatically.
 */
export declare function attach(form: HTMLFormElement, options?: CollectOptions): void;

/** The key id (RFC 7638 thumbprint) of the collector's signing key; undefined before `ready` resolves or without a key. */
export declare function keyId(): string | undefined;
