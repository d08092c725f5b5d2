// An agency system for the spoc exchange, written from docs/*.md only: plain Node.js 20, no dependencies,
// no spoc code. It is what an integrator in another language writes; tests/interop/test_interop_node_agency.py
// drives it against a real server.
//
//   node agency.mjs <command> < input.json     (the answer is one JSON document on stdout)
//
// Commands (input members in brackets):
//   send    [url, agency, destination_country, category, classification, legal_basis, plaintext, fault?]
//           keys from the directory, envelope (JWE + detached JWS), signed POST /v1/messages
//   receive [url, agency, message_id]
//           signed GET /v1/inbox, verify originator + chain of custody, decrypt, signed receipt, signed ack
//   check   [url, agency, message_id, digest, receiver]
//           signed GET /v1/messages/{id}, verify the receipt's signature and fields
//   probe   [url, agency, fault]   a signed request with one deliberate mistake, answer as received
//   examples [examples_dir]         reproduce the worked examples of agency-signing.md §4 and envelope.md §8
//
// `agency` is {"id": "AL-ASP", "signing_key": <private Ed25519 JWK>, "encryption_key": <private X25519 JWK>}.
// Docs followed: envelope.md §2-§5 and §7, agency-signing.md §1-§3, receipts.md §1-§5.

import crypto from "node:crypto";

// --- encodings --------------------------------------------------------------------------------------------

const b64u = (buf) => Buffer.from(buf).toString("base64url"); // RFC 4648 §5, no padding
const unb64u = (s) => {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]*$/.test(s)) throw new Error("not base64url");
  const buf = Buffer.from(s, "base64url");
  if (b64u(buf) !== s) throw new Error("non-canonical base64url"); // envelope.md §4: canonical
  return buf;
};
const sha256 = (data) => crypto.createHash("sha256").update(data).digest();
const utf8 = (s) => Buffer.from(s, "utf8");

// RFC 8785 (JCS), a small writer for the shapes the exchange signs: objects, arrays, strings, null, booleans
// and small integers (a custody statement's `seq`). RFC 8785 is: members sorted by UTF-16 code units
// (JavaScript's default string sort), no whitespace, strings exactly as ECMAScript JSON.stringify writes
// them (§3.2.2.2) and numbers as ECMAScript writes them (§3.2.2.3, also JSON.stringify). Non-finite numbers
// are refused; input is assumed to be I-JSON (what JSON.parse of a spoc document gives).
function jcs(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error("RFC 8785: non-finite number");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + jcs(value[k])).join(",") + "}";
  }
  throw new Error(`RFC 8785: cannot serialise ${typeof value}`);
}

// --- keys ---------------------------------------------------------------------------------------------------

// RFC 7638 thumbprint of an OKP key: SHA-256 of {"crv","kty","x"} in that order, base64url (envelope.md §4).
const thumbprint = (jwk) => b64u(sha256(utf8(`{"crv":"${jwk.crv}","kty":"OKP","x":"${jwk.x}"}`)));

const publicKey = (jwk) => crypto.createPublicKey({ key: { kty: "OKP", crv: jwk.crv, x: jwk.x }, format: "jwk" });
const privateKey = (jwk) =>
  crypto.createPrivateKey({ key: { kty: "OKP", crv: jwk.crv, x: jwk.x, d: jwk.d }, format: "jwk" });

function loadAgency(agency) {
  const sig = typeof agency.signing_key === "string" ? JSON.parse(agency.signing_key) : agency.signing_key;
  const enc = typeof agency.encryption_key === "string" ? JSON.parse(agency.encryption_key) : agency.encryption_key;
  if (sig.crv !== "Ed25519" || enc.crv !== "X25519") throw new Error("agency keys: Ed25519 + X25519 expected");
  return {
    id: agency.id,
    country: agency.id.split("-")[0],
    sigKid: thumbprint(sig),
    sigKey: privateKey(sig),
    encKid: thumbprint(enc),
    encKey: privateKey(enc),
  };
}

// GET /v1/directory/parties/{id}/jwks: public, unauthenticated (envelope.md §4 "Where keys come from").
const jwksCache = new Map();
async function directoryKeys(url, party) {
  if (!jwksCache.has(party)) {
    const res = await fetch(`${url}/v1/directory/parties/${encodeURIComponent(party)}/jwks`);
    if (res.status !== 200) throw new Error(`jwks of ${party}: HTTP ${res.status}`);
    const { keys } = await res.json();
    for (const k of keys) {
      if (k.kty !== "OKP" || thumbprint(k) !== k.kid) throw new Error(`jwks of ${party}: kid is not the thumbprint`);
    }
    jwksCache.set(party, keys);
  }
  return jwksCache.get(party);
}

// "during a rotation, encrypt to the last enc key listed"
async function encryptionKey(url, party) {
  const keys = (await directoryKeys(url, party)).filter((k) => k.use === "enc" && k.crv === "X25519");
  if (keys.length === 0) throw new Error(`${party} publishes no X25519 enc key`);
  return keys[keys.length - 1];
}

// "Verify a signature with the key whose kid matches, and only if that key is listed for the party"
async function signingKeyOf(url, party, kid) {
  const key = (await directoryKeys(url, party)).find((k) => k.kid === kid && k.use === "sig" && k.crv === "Ed25519");
  if (!key) throw new Error(`${kid} is not a signing key of ${party}`);
  return publicKey(key);
}

// --- JWE: A256GCM content, ECDH-ES+A256KW with X25519 per recipient (RFC 7516, RFC 7518 §4.6, RFC 8037) -----

const ALG = "ECDH-ES+A256KW";
const KW_IV = Buffer.from("A6A6A6A6A6A6A6A6", "hex"); // RFC 3394 default IV

// RFC 7518 §4.6.2 Concat KDF (NIST SP 800-56A), one SHA-256 round gives the 256-bit KEK for A256KW.
// AlgorithmID is the "alg" value (key agreement with key wrapping), PartyUInfo/PartyVInfo empty (no apu/apv),
// SuppPubInfo the key length in bits, each datum prefixed with its 32-bit big-endian length.
function concatKdf(z, alg, keyBits) {
  const lenPrefixed = (buf) => Buffer.concat([u32(buf.length), buf]);
  const otherInfo = Buffer.concat([lenPrefixed(utf8(alg)), lenPrefixed(Buffer.alloc(0)), lenPrefixed(Buffer.alloc(0)), u32(keyBits)]);
  return sha256(Buffer.concat([u32(1), z, otherInfo])).subarray(0, keyBits / 8);
}
function u32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function wrapFor(readerJwk, cek) {
  const eph = crypto.generateKeyPairSync("x25519");
  const z = crypto.diffieHellman({ privateKey: eph.privateKey, publicKey: publicKey(readerJwk) });
  const kek = concatKdf(z, ALG, 256);
  const kw = crypto.createCipheriv("id-aes256-wrap", kek, KW_IV);
  const encryptedKey = Buffer.concat([kw.update(cek), kw.final()]);
  const epk = eph.publicKey.export({ format: "jwk" });
  return {
    header: { alg: ALG, kid: readerJwk.kid, epk: { kty: "OKP", crv: "X25519", x: epk.x } },
    encrypted_key: b64u(encryptedKey),
  };
}

function seal(plaintext, readers) {
  const cek = crypto.randomBytes(32);
  const iv = crypto.randomBytes(12);
  const protectedB64 = b64u(utf8(JSON.stringify({ enc: "A256GCM" })));
  const gcm = crypto.createCipheriv("aes-256-gcm", cek, iv);
  gcm.setAAD(Buffer.from(protectedB64, "ascii")); // RFC 7516 §5.1 step 14: AAD = ASCII(BASE64URL(protected))
  const ciphertext = Buffer.concat([gcm.update(plaintext), gcm.final()]);
  return {
    protected: protectedB64,
    iv: b64u(iv),
    ciphertext: b64u(ciphertext),
    tag: b64u(gcm.getAuthTag()),
    recipients: readers.map((r) => wrapFor(r, cek)),
  };
}

// envelope.md §3 "Reading a General JSON JWE": my entry by kid, reduced to the Flattened form, decrypted.
function open(jwe, me) {
  if (jwe.unprotected !== undefined) throw new Error("JWE: shared unprotected header");
  const prot = JSON.parse(unb64u(jwe.protected).toString("utf8"));
  if (prot.enc !== "A256GCM" || prot.zip !== undefined) throw new Error("JWE: only A256GCM, no zip");
  const mine = jwe.recipients.filter((r) => r.header && r.header.kid === me.encKid);
  if (mine.length !== 1) throw new Error(`JWE: ${mine.length} recipient entries for my kid`);
  const flat = { protected: jwe.protected, iv: jwe.iv, ciphertext: jwe.ciphertext, tag: jwe.tag, ...mine[0] };
  const h = { ...prot, ...flat.header };
  if (h.alg !== ALG || !h.epk || h.epk.kty !== "OKP" || h.epk.crv !== "X25519") throw new Error("JWE: alg/epk");
  const z = crypto.diffieHellman({ privateKey: me.encKey, publicKey: publicKey(h.epk) });
  const kw = crypto.createDecipheriv("id-aes256-wrap", concatKdf(z, ALG, 256), KW_IV);
  const cek = Buffer.concat([kw.update(unb64u(flat.encrypted_key)), kw.final()]);
  const gcm = crypto.createDecipheriv("aes-256-gcm", cek, unb64u(flat.iv));
  const aad = jwe.aad === undefined ? flat.protected : `${flat.protected}.${jwe.aad}`;
  gcm.setAAD(Buffer.from(aad, "ascii"));
  gcm.setAuthTag(unb64u(flat.tag));
  return Buffer.concat([gcm.update(unb64u(flat.ciphertext)), gcm.final()]);
}

// --- JWS (RFC 7515, EdDSA/Ed25519) --------------------------------------------------------------------------

const SIGNED_JWE_MEMBERS = ["protected", "iv", "ciphertext", "tag", "aad"];

// envelope.md §5: RFC 8785 of {"header": <header as sent>, "payload": {protected, iv, ciphertext, tag[, aad]}}
function signingInput(header, payload) {
  const covered = {};
  for (const m of SIGNED_JWE_MEMBERS) if (payload[m] !== undefined) covered[m] = payload[m];
  return utf8(jcs({ header, payload: covered }));
}

const digestOf = (input) => "sha-256:" + sha256(input).toString("hex");

function signCompact(payloadBytes, typ, me, { detached }) {
  const protectedB64 = b64u(utf8(JSON.stringify({ alg: "EdDSA", kid: me.sigKid, typ })));
  const payloadB64 = b64u(payloadBytes);
  const sig = crypto.sign(null, Buffer.from(`${protectedB64}.${payloadB64}`, "ascii"), me.sigKey);
  return `${protectedB64}.${detached ? "" : payloadB64}.${b64u(sig)}`;
}

// Verify a compact JWS (detached if `detachedPayload` is given) made by `party` with the profile's header:
// exactly alg, kid, typ (cty tolerated), typ compared case-insensitively, an application/ prefix tolerated.
async function verifyCompact(url, token, party, typ, detachedPayload) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("JWS: not compact");
  const header = JSON.parse(unb64u(parts[0]).toString("utf8"));
  const extra = Object.keys(header).filter((k) => !["alg", "kid", "typ", "cty"].includes(k));
  if (extra.length || header.alg !== "EdDSA") throw new Error(`JWS: header outside the profile (${extra})`);
  if (String(header.typ).toLowerCase().replace(/^application\//, "") !== typ) throw new Error(`JWS: typ ${header.typ}`);
  let payloadB64 = parts[1];
  if (detachedPayload !== undefined) {
    if (payloadB64 !== "") throw new Error("JWS: expected a detached payload");
    payloadB64 = b64u(detachedPayload);
  }
  const key = await signingKeyOf(url, party, header.kid);
  const ok = crypto.verify(null, Buffer.from(`${parts[0]}.${payloadB64}`, "ascii"), key, unb64u(parts[2]));
  if (!ok) throw new Error(`JWS: the signature of ${party} does not verify`);
  return unb64u(payloadB64);
}

// An attached statement must be exactly the canonical form of what it decodes to (envelope.md §6, receipts.md §2).
function canonicalStatement(bytes) {
  const statement = JSON.parse(bytes.toString("utf8"));
  if (jcs(statement) !== bytes.toString("utf8")) throw new Error("statement bytes are not RFC 8785 canonical");
  return statement;
}

// --- RFC 9421 request signing (agency-signing.md) -----------------------------------------------------------

function signedHeaders(me, method, target, body, fault, { created, nonce } = {}) {
  const u = new URL(target, "http://x");
  const path = u.pathname; // every spoc path is plain ASCII, so this is the request line's path as sent
  const query = u.search === "" ? "?" : u.search;
  const headers = {};
  const components = ['"@method"', '"@path"', '"@query"'];
  const lines = [`"@method": ${method}`, `"@path": ${path}`, `"@query": ${query}`];
  if (body !== undefined) {
    let digestBytes = body;
    if (fault === "content-digest") digestBytes = Buffer.concat([body, utf8(" ")]); // not the bytes sent
    headers["Content-Type"] = "application/json";
    headers["Content-Digest"] = `sha-256=:${sha256(digestBytes).toString("base64")}:`;
    components.push('"content-digest"');
    lines.push(`"content-digest": ${headers["Content-Digest"]}`);
  }
  created ??= Math.floor(Date.now() / 1000);
  nonce ??= b64u(crypto.randomBytes(16)); // fresh for every request, retries included
  const params = `(${components.join(" ")});created=${created};keyid="${me.sigKid}";alg="ed25519";nonce="${nonce}";tag="spoc-agency"`;
  lines.push(`"@signature-params": ${params}`);
  const signature = crypto.sign(null, Buffer.from(lines.join("\n"), "ascii"), me.sigKey).toString("base64");
  const label = fault === "label" ? "my-agency" : "spoc-agency";
  headers["Signature-Input"] = `${label}=${params}`;
  headers["Signature"] = `${label}=:${signature}:`;
  return headers;
}

async function call(url, me, method, target, { body, extra = {}, fault } = {}) {
  const bytes = body === undefined ? undefined : utf8(JSON.stringify(body));
  const headers = { ...signedHeaders(me, method, target, bytes, fault), ...extra };
  const res = await fetch(url + target, { method, headers, body: bytes });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { raw: text.slice(0, 500) };
  }
  return { status: res.status, contentType: res.headers.get("content-type"), body: json };
}

// --- the agency's path ---------------------------------------------------------------------------------------

async function send(input) {
  const me = loadAgency(input.agency);
  const url = input.url;
  const readers = [
    await encryptionKey(url, `${me.country}-SPOC`),
    await encryptionKey(url, `${input.destination_country}-SPOC`),
  ];
  const messageId = crypto.randomUUID();
  const header = {
    message_id: messageId,
    conversation_id: crypto.randomUUID(),
    type: "request",
    sender_agency: me.id,
    origin_country: me.country,
    destination_country: input.destination_country,
    category: input.category,
    legal_basis: input.legal_basis,
    classification: input.classification,
    handling_codes: ["H0"],
    evaluation: { source_reliability: "B", information_accuracy: "2" },
    priority: { level: "normal", information_access: "indirect" },
    created_at: input.created_at ?? new Date().toISOString(), // envelope.md §2: toISOString() is fine
  };
  const payload = seal(utf8(input.plaintext), readers);
  const input_ = signingInput(header, payload);
  const envelope = {
    spoc: "1",
    header,
    payload,
    signature: signCompact(input_, "spoc-envelope+jws", me, { detached: true }),
  };
  if (input.fault === "ciphertext") {
    // changed after signing: the broker must refuse it (envelope.md §9, 422 verification-failed)
    const ct = unb64u(payload.ciphertext);
    ct[0] ^= 1;
    payload.ciphertext = b64u(ct);
  }
  const answer = await call(url, me, "POST", "/v1/messages", {
    body: envelope,
    extra: { "Idempotency-Key": messageId },
    fault: input.fault,
  });
  return {
    message_id: messageId,
    digest: digestOf(input_),
    readers: readers.map((r) => r.kid),
    signing_input_bytes: input_.length,
    answer,
  };
}

async function receive(input) {
  const me = loadAgency(input.agency);
  const url = input.url;
  const inbox = await call(url, me, "GET", "/v1/inbox?limit=500&visibility_timeout=60");
  if (inbox.status !== 200) return { error: "inbox", inbox };
  const item = inbox.body.find((i) => i.message_id === input.message_id);
  if (!item) return { error: "not in the inbox", inbox: inbox.body.map((i) => i.message_id) };
  const { header, payload, signature } = item.envelope;
  // envelope.md §7.2: the originator's detached signature over the signing input
  const input_ = signingInput(header, payload);
  await verifyCompact(url, signature, header.sender_agency, "spoc-envelope+jws", input_);
  const digest = digestOf(input_);
  // §7.3: the chain of custody
  const chain = [];
  let seq = 0;
  for (const step of item.custody) {
    if (step.decision === "submitted") {
      if (step.signature !== signature) throw new Error("custody step 0 is not the originator's signature");
      chain.push({ party: step.party, decision: step.decision });
      continue;
    }
    seq += 1;
    const bytes = await verifyCompact(url, step.signature, step.party, "spoc-custody+jws");
    const st = canonicalStatement(bytes);
    if (st.message_id !== item.message_id || st.party !== step.party || st.digest !== digest || st.seq !== seq) {
      throw new Error(`custody step ${seq}: statement does not match`);
    }
    chain.push({ party: st.party, decision: st.decision, seq: st.seq });
  }
  // §7.4: decrypt my entry
  const plaintext = open(payload, me).toString("utf8");
  // receipts.md §2-§3: the statement, canonical, signed attached with typ spoc-receipt+jws
  const statement = {
    type: "receipt",
    message_id: item.message_id,
    digest,
    agency: me.id,
    received_at: new Date().toISOString(),
  };
  const receipt = signCompact(utf8(jcs(statement)), "spoc-receipt+jws", me, { detached: false });
  const ack = await call(url, me, "POST", `/v1/inbox/${item.message_id}/ack`, { body: { receipt } });
  return { message_id: item.message_id, plaintext, digest, chain, statement, receipt, ack };
}

async function check(input) {
  const me = loadAgency(input.agency);
  const url = input.url;
  const status = await call(url, me, "GET", `/v1/messages/${input.message_id}`);
  if (status.status !== 200) return { error: "status", status };
  const verified = [];
  for (const entry of status.body.receipts || []) {
    const st = canonicalStatement(await verifyCompact(url, entry.receipt, entry.agency, "spoc-receipt+jws"));
    const problems = [];
    if (st.type !== "receipt") problems.push("type");
    if (st.message_id !== input.message_id) problems.push("message_id");
    if (st.agency !== entry.agency) problems.push("agency");
    if (input.receiver && st.agency !== input.receiver) problems.push("not the expected agency");
    if (st.digest !== input.digest) problems.push("digest is not the one I signed");
    if (entry.digest !== st.digest) problems.push("listed digest differs from the signed one");
    if (Date.parse(entry.received_at) !== Date.parse(st.received_at)) problems.push("listed received_at differs");
    if (Number.isNaN(Date.parse(st.received_at))) problems.push("received_at");
    verified.push({ agency: entry.agency, statement: st, problems });
  }
  return { state: status.body.state, receipts: verified };
}

async function probe(input) {
  const me = loadAgency(input.agency);
  if (input.fault === "label") return call(input.url, me, "GET", "/v1/inbox?limit=1&visibility_timeout=0", { fault: "label" });
  throw new Error(`unknown probe ${input.fault}`);
}

// The worked examples of docs/agency-signing.md §4 and docs/envelope.md §8, reproduced from schemas/examples/.
async function examples(input) {
  const fs = await import("node:fs");
  const read = (name) => fs.readFileSync(`${input.examples_dir}/${name}`);
  const out = { requests: [], envelope: {} };
  // agency-signing.md §4: same key, created and nonce give the same headers byte for byte (Ed25519 is deterministic)
  const signing = JSON.parse(read("agency-signing.example.json"));
  const me = { sigKid: thumbprint(signing.private_jwk), sigKey: privateKey(signing.private_jwk) };
  for (const r of signing.requests) {
    const body = r.body === "" ? undefined : utf8(r.body);
    const h = signedHeaders(me, r.method, r.target, body, undefined, { created: r.created, nonce: r.nonce });
    const mine = { "signature-input": h["Signature-Input"], signature: h["Signature"] };
    if (body !== undefined) mine["content-digest"] = h["Content-Digest"];
    out.requests.push({ name: r.name, keyid: me.sigKid, same: jcs(mine) === jcs(r.headers) });
  }
  // envelope.md §8: thumbprints, signing input, digest, signature, decryption by both contact points
  const pub = JSON.parse(read("keys.example.jwks.json"));
  const priv = JSON.parse(read("keys.example.private.jwks.json"));
  for (const [party, kid] of Object.entries(pub.parties)) jwksCache.set(party, pub.keys.filter((k) => k.kid === kid));
  out.envelope.kids_are_thumbprints = pub.keys.every((k) => thumbprint(k) === k.kid);
  const envelope = JSON.parse(read("envelope.example.json"));
  const input_ = signingInput(envelope.header, envelope.payload);
  out.envelope.signing_input_bytes = input_.length;
  out.envelope.digest = digestOf(input_);
  await verifyCompact("", envelope.signature, envelope.header.sender_agency, "spoc-envelope+jws", input_);
  out.envelope.signature_verifies = true;
  try {
    const changed = { ...envelope.header, category: "fraud" };
    await verifyCompact("", envelope.signature, envelope.header.sender_agency, "spoc-envelope+jws", signingInput(changed, envelope.payload));
    out.envelope.changed_header_verifies = true;
  } catch {
    out.envelope.changed_header_verifies = false;
  }
  const plaintext = read("plaintext.example.json");
  out.envelope.opened_by = {};
  for (const party of ["AL-SPOC", "RS-SPOC"]) {
    const jwk = priv.keys.find((k) => k.kid === priv.parties[party]);
    const reader = { encKid: thumbprint(jwk), encKey: privateKey(jwk) };
    out.envelope.opened_by[party] = open(envelope.payload, reader).equals(plaintext);
  }
  return out;
}

// --- main -----------------------------------------------------------------------------------------------------

const commands = { send, receive, check, probe, examples };
const command = commands[process.argv[2]];
if (!command) {
  process.stderr.write(`usage: node agency.mjs ${Object.keys(commands).join("|")} < input.json\n`);
  process.exit(2);
}
let raw = "";
for await (const chunk of process.stdin) raw += chunk;
try {
  process.stdout.write(JSON.stringify(await command(JSON.parse(raw))) + "\n");
} catch (err) {
  process.stderr.write(`agency.mjs ${process.argv[2]}: ${err.stack || err}\n`);
  process.exit(1);
}
