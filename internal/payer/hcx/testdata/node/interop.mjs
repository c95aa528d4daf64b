// An independent JOSE implementation (the npm "jose" package) at the other
// end of careflow's HCX codec, for codec_test.go.
//
//   node interop.mjs decrypt KEY.pem   < compact JWE  → {"header": {...}, "payload": "..."}
//   node interop.mjs encrypt CERT.pem HEADER.json < payload → compact JWE
import { readFileSync } from 'node:fs';
import { compactDecrypt, CompactEncrypt, importPKCS8, importX509 } from 'jose';

const [mode, keyFile, headerFile] = process.argv.slice(2);
const input = readFileSync(0);

if (mode === 'decrypt') {
  const key = await importPKCS8(readFileSync(keyFile, 'utf8'), 'RSA-OAEP-256');
  const { plaintext, protectedHeader } = await compactDecrypt(input.toString('utf8').trim(), key, {
    keyManagementAlgorithms: ['RSA-OAEP-256', 'RSA-OAEP'],
    contentEncryptionAlgorithms: ['A256GCM'],
  });
  process.stdout.write(JSON.stringify({ header: protectedHeader, payload: new TextDecoder().decode(plaintext) }));
} else if (mode === 'encrypt') {
  const key = await importX509(readFileSync(keyFile, 'utf8'), 'RSA-OAEP-256');
  const header = JSON.parse(readFileSync(headerFile, 'utf8'));
  const jwe = await new CompactEncrypt(input)
    .setProtectedHeader({ ...header, alg: 'RSA-OAEP-256', enc: 'A256GCM' })
    .encrypt(key);
  process.stdout.write(jwe);
} else {
  process.stderr.write('usage: interop.mjs decrypt|encrypt KEYFILE [HEADER.json]\n');
  process.exit(2);
}
