'use strict';
// Sign time per request with a 1 KB body: node sdk/js/bench.js
const crypto = require('node:crypto');
const kg = require('.');
const s = new kg.Signer('AKBENCH000000001', 'bench-secret', { signedHeaders: ['host', 'content-type'] });
const body = crypto.randomBytes(1024);
const h = { 'Content-Type': 'application/octet-stream' };
const url = 'https://gw.example.com/v1/orders/123?b=2&a=1&q=hello%20world';
for (let i = 0; i < 5000; i++) s.sign('POST', url, h, body);
const n = 50000;
let best = Infinity;
for (let r = 0; r < 3; r++) { const t = process.hrtime.bigint(); for (let i = 0; i < n; i++) s.sign('POST', url, h, body); best = Math.min(best, Number(process.hrtime.bigint() - t)); }
console.log(`node ${process.version}: ${(best / n / 1000).toFixed(1)} us/sign (1 KB body, 2 signed headers)`);
