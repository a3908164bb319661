// A relying party built on npm's openid-client, for tests/test_rp_openid_client.py.
//
// node openid_client_rp.mjs ISSUER CLIENT_ID RP_BASE PORT
// Env RP_NODE_PREFIX: where scripts/ensure-oidc-rps installed openid-client (.cache/rp-node).
// Env RP_CLIENT_SECRET (optional): a confidential client, client_secret_basic; else public.
// Env RP_ID_TOKEN_ALG (optional): the client's id_token_signed_response_alg (default RS256).
// Listens on loopback PORT (127.0.0.1 and ::1) as RP_BASE (e.g. http://localhost:PORT).
// Routes:
//   /login[?prompt=&max_age=]  new RP session (cookie), redirect to the provider with
//                              state, nonce and PKCE S256
//   /callback                  authorizationCodeGrant (checks state, iss per RFC 9207, PKCE,
//                              ID token signature/iss/aud/nonce/exp), userinfo, refresh;
//                              the validated results as JSON in <pre id="rp-done">
//   /logout                    redirect to the end_session_endpoint with id_token_hint
//   /logged-out                checks the state the provider echoed
// Any failure is shown in <pre id="rp-error"> with openid-client's error code and details.
// Prints "ready" on stdout once listening.
import http from "node:http";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [issuer, clientId, rpBase, port] = process.argv.slice(2);
const require = createRequire(`${process.env.RP_NODE_PREFIX}/package.json`);
const client = await import(pathToFileURL(require.resolve("openid-client")).href);
const { version } = require("openid-client/package.json");

const secret = process.env.RP_CLIENT_SECRET;
const metadata = {};
if (process.env.RP_ID_TOKEN_ALG) metadata.id_token_signed_response_alg = process.env.RP_ID_TOKEN_ALG;
const authentication = secret ? client.ClientSecretBasic(secret) : client.None();
const config = await client.discovery(new URL(issuer), clientId, metadata, authentication, {
  execute: [client.allowInsecureRequests], // the provider under test is http on loopback
});
const sessions = new Map();
const SCOPE = "openid profile";

function page(response, status, id, value) {
  const text = JSON.stringify(value, null, 2).replace(/&/g, "&amp;").replace(/</g, "&lt;");
  response.writeHead(status, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
  response.end(`<!doctype html><title>openid-client RP</title><pre id="${id}">${text}</pre>`);
}

function redirect(response, location, headers = {}) {
  response.writeHead(302, { Location: location, ...headers });
  response.end();
}

function session(request) {
  const cookie = (request.headers.cookie || "").split(/;\s*/).find((c) => c.startsWith("rp="));
  return cookie ? sessions.get(cookie.slice(3)) : undefined;
}

function describe(error) {
  return {
    name: error.name,
    message: error.message,
    code: error.code,
    error: error.error,
    error_description: error.error_description,
    status: error.status,
    cause: error.cause instanceof Error ? String(error.cause) : error.cause,
  };
}

async function login(url, response) {
  const id = randomBytes(16).toString("hex");
  const state = client.randomState();
  const nonce = client.randomNonce();
  const verifier = client.randomPKCECodeVerifier();
  sessions.set(id, { state, nonce, verifier });
  const parameters = {
    redirect_uri: `${rpBase}/callback`,
    scope: SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
  };
  for (const name of ["prompt", "max_age"]) {
    if (url.searchParams.has(name)) parameters[name] = url.searchParams.get(name);
  }
  const cookie = `rp=${id}; Path=/; HttpOnly; SameSite=Lax`;
  redirect(response, client.buildAuthorizationUrl(config, parameters).href, { "Set-Cookie": cookie });
}

async function callback(url, request, response) {
  const pending = session(request);
  if (!pending) return page(response, 400, "rp-error", { message: "no RP session cookie came back" });
  const tokens = await client.authorizationCodeGrant(config, url, {
    pkceCodeVerifier: pending.verifier,
    expectedState: pending.state,
    expectedNonce: pending.nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  let refreshed = null;
  if (tokens.refresh_token) {
    const again = await client.refreshTokenGrant(config, tokens.refresh_token);
    refreshed = {
      claims: again.id_token ? again.claims() : null,
      rotated: Boolean(again.refresh_token) && again.refresh_token !== tokens.refresh_token,
      userinfo_sub: (await client.fetchUserInfo(config, again.access_token, claims.sub)).sub,
    };
  }
  pending.idToken = tokens.id_token;
  const header = JSON.parse(Buffer.from(tokens.id_token.split(".")[0], "base64url").toString());
  page(response, 200, "rp-done", {
    openid_client: version,
    id_token_header: header,
    token_type: tokens.token_type,
    scope: tokens.scope,
    claims,
    userinfo,
    refreshed,
  });
}

function logout(request, response) {
  const pending = session(request);
  if (!pending || !pending.idToken) return page(response, 400, "rp-error", { message: "not logged in" });
  pending.logoutState = client.randomState();
  const url = client.buildEndSessionUrl(config, {
    id_token_hint: pending.idToken,
    post_logout_redirect_uri: `${rpBase}/logged-out`,
    state: pending.logoutState,
  });
  redirect(response, url.href);
}

function loggedOut(url, request, response) {
  const pending = session(request);
  const state = url.searchParams.get("state");
  if (!pending || state !== pending.logoutState) {
    return page(response, 400, "rp-error", { message: "logout state mismatch", state });
  }
  page(response, 200, "rp-done", { logged_out: true, state });
}

async function handle(request, response) {
  const url = new URL(request.url, rpBase);
  try {
    if (url.pathname === "/login") return await login(url, response);
    if (url.pathname === "/callback") return await callback(url, request, response);
    if (url.pathname === "/logout") return logout(request, response);
    if (url.pathname === "/logged-out") return loggedOut(url, request, response);
    page(response, 404, "rp-error", { message: `no route ${url.pathname}` });
  } catch (error) {
    page(response, 500, "rp-error", describe(error));
  }
}

for (const host of ["127.0.0.1", "::1"]) {
  const server = http.createServer((request, response) => void handle(request, response));
  server.on("error", (error) => {
    if (host === "::1") return; // no IPv6 loopback here: 127.0.0.1 is enough
    console.error(`cannot listen on ${host}:${port}: ${error.message}`);
    process.exit(1);
  });
  server.listen(Number(port), host, () => {
    if (host === "127.0.0.1") console.log("ready");
  });
}
